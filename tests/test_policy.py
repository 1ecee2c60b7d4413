"""The default risk policy: every rule fires where it should, explains itself, and adds up."""

import pytest

from review.intake.policy import Facts
from review.intake.policy_loading import load_policy
from review.settings import PROJECT_ROOT, SettingsError

POLICY = load_policy(PROJECT_ROOT / "config" / "policy.toml", (25, 50, 75))


def evaluate(tool="notes.add", args=None, **kw):
    return POLICY.evaluate(
        Facts(
            tool=tool, args=args or {}, principal_id=kw.pop("principal", "alice@example.com"), **kw
        )
    )


def rules(evaluation):
    return {f["rule"]: f for f in evaluation.factors}


@pytest.mark.parametrize(
    "facts,rule,detail",
    [
        (dict(tool="billing.refund"), "payment_tool", "billing.refund moves money"),
        (dict(tool="stripe.payout"), "payment_tool", "stripe.payout moves money"),
        (dict(args={"amount": 740}), "amount_over_500", "amount 740 > 500"),
        (dict(args={"order": {"total": 501.5}}), "amount_over_500", "total 501.5 > 500"),
        (dict(args={"amount": 9000}), "amount_over_5000", "amount 9000 > 5000"),
        (dict(tool="email.send"), "outbound_message", "email.send sends a message"),
        (dict(args={"to": ["bob@gmail.com"]}), "external_recipient", "external to: bob@gmail.com"),
        (
            dict(args={"webhook_url": "https://evil.example.net/x"}),
            "external_recipient",
            "external webhook_url: https://evil.example.net/x",
        ),
        (
            dict(args={"recipients": [f"u{i}@example.com" for i in range(11)]}),
            "mass_recipients",
            "11 recipients in recipients",
        ),
        (dict(tool="db.delete_rows"), "destructive_tool", "db.delete_rows destroys data"),
        (dict(args={"ids": list(range(101))}), "bulk_operation", "ids lists 101 items"),
        (dict(tool="terraform.apply"), "infra_change", "terraform.apply changes infrastructure"),
        (dict(tool="iam.grant_role"), "access_grant", "iam.grant_role grants access"),
        (dict(tool="github.add_member"), "access_grant", "github.add_member grants access"),
        (
            dict(changed_paths=["/user/role"], change_count=1),
            "sensitive_field",
            "changes /user/role",
        ),
        (
            dict(changed_paths=[f"/rows/{i}" for i in range(51)], change_count=51),
            "large_change",
            "51 fields change",
        ),
        (dict(labels={"env": "prod"}), "production", "label env=prod"),
        (
            dict(principal="system:nightly"),
            "unattended",
            "no human asked for this (system:nightly)",
        ),
    ],
)
def test_each_default_rule_fires_with_its_points_and_detail(facts, rule, detail):
    factor = rules(evaluate(**facts)).get(rule)
    assert factor is not None, evaluate(**facts).factors
    assert factor["detail"] == detail
    assert factor["points"] == next(r.points for r in POLICY.rules if r.id == rule)


@pytest.mark.parametrize(
    "facts",
    [
        dict(tool="notes.add", args={"amount": 500}),
        dict(args={"to": ["carol@example.com", "ops@mail.example.org"]}),
        dict(args={"recipients": ["a@example.com"] * 10}),
        dict(args={"ids": list(range(100))}),
        dict(changed_paths=["/user/name"], change_count=1),
        dict(labels={"env": "staging"}),
        dict(args={"amount": True}),
        dict(args={"amount": "9999"}),  # a string is not a number
    ],
)
def test_the_rules_stay_quiet_below_their_thresholds(facts):
    assert evaluate(**facts).factors == []
    assert evaluate(**facts).score == 0 and evaluate(**facts).level == "low"


def test_points_add_up_and_the_score_is_clamped_to_100():
    e = evaluate(
        tool="iam.grant_role",
        args={"amount": 9000, "to": "x@evil.test"},
        labels={"env": "prod"},
        principal="system:x",
    )
    assert sum(f["points"] for f in e.factors) > 100
    assert e.score == 100 and e.level == "critical"


def test_levels_follow_the_thresholds():
    assert [POLICY.level_for(s) for s in (0, 24, 25, 49, 50, 74, 75, 100)] == [
        "low",
        "low",
        "medium",
        "medium",
        "high",
        "high",
        "critical",
        "critical",
    ]


def test_the_agents_claim_raises_the_score_but_never_lowers_it():
    raised = evaluate(tool="email.send", agent_score=60)
    assert raised.score == 60 and raised.agent_score == 60
    claim = rules(raised)["agent_claim"]
    assert claim["points"] == 50 and claim["detail"] == "the agent rated this 60"
    assert sum(f["points"] for f in raised.factors) == 60
    lowered = evaluate(tool="terraform.apply", labels={"env": "prod"}, agent_score=0)
    assert lowered.score == 45 and "agent_claim" not in rules(lowered)


def test_a_rule_fires_once_and_agent_text_in_details_is_shortened():
    e = evaluate(args={"to": ["x" * 200 + "@evil.test", "y@evil.test"]})
    factor = rules(e)["external_recipient"]
    assert len([f for f in e.factors if f["rule"] == "external_recipient"]) == 1
    assert len(factor["detail"]) < 120 and factor["detail"].endswith("…")


def test_the_policy_version_is_a_hash_of_rules_and_levels(tmp_path):
    same = load_policy(PROJECT_ROOT / "config" / "policy.toml", (25, 50, 75))
    assert same.version == POLICY.version and POLICY.version.startswith("sha256:")
    other_levels = load_policy(PROJECT_ROOT / "config" / "policy.toml", (20, 50, 75))
    assert other_levels.version != POLICY.version
    edited = tmp_path / "p.toml"
    edited.write_text(
        (PROJECT_ROOT / "config" / "policy.toml").read_text().replace("points = 40", "points = 41")
    )
    assert load_policy(edited, (25, 50, 75)).version != POLICY.version


@pytest.mark.parametrize(
    "text,message",
    [
        ('[[rule]]\nid = "x"\nkind = "magic"\npoints = 1\ndetail = "d"', "kind must be one of"),
        ('[[rule]]\nid = "Bad Id"\nkind = "tool"\npoints = 1\ndetail = "d"\nmatch = []', "id must"),
        ('[[rule]]\nid = "x"\nkind = "tool"\npoints = 500\ndetail = "d"\nmatch = []', "points"),
        (
            '[[rule]]\nid = "x"\nkind = "tool"\npoints = 1\ndetail = "{nope}"\nmatch = []',
            "unknown placeholder",
        ),
        (
            '[[rule]]\nid = "x"\nkind = "tool"\npoints = 1\ndetail = "d"\nmatch = []\nextra = 1',
            "unknown keys",
        ),
        (
            '[[rule]]\nid = "x"\nkind = "tool"\npoints = 1\ndetail = "d"\nmatch = []\n'
            '[[rule]]\nid = "x"\nkind = "tool"\npoints = 1\ndetail = "d"\nmatch = []',
            "duplicate",
        ),
        ("rules = 1", "unknown top-level"),
        ("[[rule]\n", "policy"),
    ],
)
def test_a_bad_policy_is_refused_at_start_with_the_reason(tmp_path, text, message):
    path = tmp_path / "policy.toml"
    path.write_text(text)
    with pytest.raises(SettingsError, match=message):
        load_policy(path, (25, 50, 75))


def test_the_version_in_force_is_stored_with_every_evaluation(agent, svc):
    d = agent.defer().get_json()
    assert d["risk"]["policy_version"] == svc.policy.version
