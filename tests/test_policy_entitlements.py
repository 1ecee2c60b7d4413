"""Entitlements and context in the policy (PROTOCOL.md section 17): conditions on who asked
(verified or not, their groups) and rules over a time window, counted in Redis."""

from __future__ import annotations

import pytest

from review.intake import policy_windows
from review.intake.policy import Facts
from review.intake.policy_loading import load_policy
from review.settings import PROJECT_ROOT, SettingsError
from tests.helpers import refund
from tests.principal_issuer import AUDIENCE, Issuer

DEFAULT = load_policy(PROJECT_ROOT / "config" / "policy.toml", (25, 50, 75))


def policy_from(tmp_path, text: str):
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return load_policy(path, (25, 50, 75))


def facts(tool="billing.refund", args=None, *, verified=False, groups=(), **kw):
    return Facts(
        tool=tool,
        args={"amount": 740} if args is None else args,
        principal_id=kw.pop("principal", "alice@example.com"),
        principal_verified=verified,
        principal_groups=tuple(groups),
        **kw,
    )


def factors(evaluation):
    """The factors by rule, of an Evaluation or of a resource's `risk`."""
    listed = evaluation["factors"] if isinstance(evaluation, dict) else evaluation.factors
    return {f["rule"]: f for f in listed}


# --- conditions -------------------------------------------------------------------------

CONDITIONAL = """
[[rule]]
id = "refund_over_500"
kind = "argument_over"
keys = ["amount"]
threshold = 500
when = { tool = ["*.refund"] }
points = 10
detail = "{key} {value} > {threshold}"

[[rule]]
id = "finance_may"
kind = "tool"
match = ["*"]
when = { principal_in = ["finance", "treasury"] }
points = 0
outcome = "allow"
detail = "the principal is in finance"

[[rule]]
id = "outsiders"
kind = "tool"
match = ["*"]
when = { principal_not_in = ["finance"] }
points = 5
detail = "{tool}: the principal is not shown to be in finance"

[[rule]]
id = "claimed_only"
kind = "tool"
match = ["*"]
when = { principal_verified = false }
points = 1
detail = "claimed"

[[rule]]
id = "verified_only"
kind = "tool"
match = ["*"]
when = { principal_verified = true }
points = 2
detail = "verified"
"""


def test_a_tool_condition_narrows_a_rule_of_any_kind(tmp_path):
    policy = policy_from(tmp_path, CONDITIONAL)
    assert "refund_over_500" in factors(policy.evaluate(facts("billing.refund")))
    assert "refund_over_500" not in factors(policy.evaluate(facts("billing.charge")))


def test_principal_in_needs_a_verified_member(tmp_path):
    policy = policy_from(tmp_path, CONDITIONAL)
    member = policy.evaluate(facts("files.get", {}, verified=True, groups=["treasury"]))
    assert member.outcome == "allow" and member.rule == "finance_may"
    # The same groups, claimed: an unverified principal has none.
    claimed = policy.evaluate(facts("files.get", {}, verified=False, groups=["finance"]))
    assert claimed.outcome == "ask" and "finance_may" not in factors(claimed)


def test_principal_not_in_holds_for_outsiders_and_the_unverified(tmp_path):
    policy = policy_from(tmp_path, CONDITIONAL)
    assert "outsiders" in factors(policy.evaluate(facts(verified=True, groups=["sales"])))
    assert "outsiders" in factors(policy.evaluate(facts(verified=False)))
    assert "outsiders" not in factors(policy.evaluate(facts(verified=True, groups=["finance"])))


def test_principal_verified_tells_verified_from_claimed(tmp_path):
    policy = policy_from(tmp_path, CONDITIONAL)
    claimed = factors(policy.evaluate(facts(verified=False)))
    verified = factors(policy.evaluate(facts(verified=True)))
    assert "claimed_only" in claimed and "verified_only" not in claimed
    assert "verified_only" in verified and "claimed_only" not in verified


def test_conditions_are_part_of_the_policy_version(tmp_path):
    one = policy_from(tmp_path, CONDITIONAL)
    other = policy_from(tmp_path, CONDITIONAL.replace('"treasury"', '"payroll"'))
    assert one.version != other.version


@pytest.mark.parametrize(
    "when,message",
    [
        ('when = { colour = ["red"] }', "when.colour is not a condition"),
        ("when = { principal_verified = 1 }", "when.principal_verified must be true or false"),
        ("when = { principal_in = [] }", "when.principal_in must be a non-empty list"),
        ('when = "finance"', "when must be a table"),
    ],
)
def test_a_bad_condition_is_refused_with_its_line(tmp_path, when, message):
    text = f'[[rule]]\nid = "r"\nkind = "tool"\nmatch = ["*"]\npoints = 1\ndetail = "x"\n{when}\n'
    with pytest.raises(SettingsError) as caught:
        policy_from(tmp_path, text)
    assert message in str(caught.value) and ":7:" in str(caught.value)


# --- the default policy's entitlement rules ----------------------------------------------


def test_an_unverified_principal_is_never_allowed_automatically_for_money_or_access(tmp_path):
    allow_all = '\n[[rule]]\nid = "allow_all"\nkind = "tool"\nmatch = ["*"]\npoints = 0\n'
    allow_all += 'outcome = "allow"\ndetail = "everything"\n'
    text = (PROJECT_ROOT / "config" / "policy.toml").read_text() + allow_all
    policy = policy_from(tmp_path, text)
    for tool in ("billing.refund", "stripe.payout", "iam.grant_role", "github.add_member"):
        claimed = policy.evaluate(facts(tool, {"amount": 10}))
        assert claimed.outcome == "ask", tool
        assert claimed.rule == "unverified_principal_money_or_access"
        verified = policy.evaluate(facts(tool, {"amount": 10}, verified=True, groups=["finance"]))
        assert "unverified_principal_money_or_access" not in factors(verified)
    # Other tools are not held back by it.
    assert policy.evaluate(facts("notes.add", {})).outcome == "allow"


def test_money_out_over_500_wants_a_principal_in_finance():
    outsider = DEFAULT.evaluate(facts(verified=True, groups=["support"]))
    factor = factors(outsider)["money_out_over_500_outside_finance"]
    assert factor["points"] == 25 and "finance" in factor["detail"]
    assert outsider.outcome == "ask"
    member = DEFAULT.evaluate(facts(verified=True, groups=["finance"]))
    assert "money_out_over_500_outside_finance" not in factors(member)
    small = DEFAULT.evaluate(facts(args={"amount": 20}, verified=True, groups=["support"]))
    assert "money_out_over_500_outside_finance" not in factors(small)


# --- windows ---------------------------------------------------------------------------

WINDOWS = """
[[rule]]
id = "third_refund_to_a_customer"
kind = "window_count"
per = ["args.customer"]
window = 3600
at_least = 3
when = { tool = ["*.refund"] }
points = 25
outcome = "ask"
detail = "{count} refunds to {who} in {window}"

[[rule]]
id = "first_use_of_a_tool"
kind = "window_count"
per = ["principal", "tool"]
window = 2592000
at_most = 1
points = 5
detail = "first use: {who}"

[[rule]]
id = "agent_refunds_over_2000"
kind = "window_sum"
per = ["agent"]
sum = "amount"
over = 2000
window = 86400
points = 20
detail = "{sum} adds up to {total} > {over} for {who} in {window}"
"""


@pytest.fixture
def windowed(make_app, make_agent, tmp_path):
    path = tmp_path / "policy.toml"
    path.write_text(WINDOWS)

    def build(**overrides):
        app = make_app(policy_file=str(path), agent_rate=0, **overrides)
        return app.extensions["countersign"], make_agent().on(app)

    return build


def refund_to(customer: str, amount: int = 100, principal: str = "alice@example.com"):
    return refund(
        action={"tool": "billing.refund", "args": {"customer": customer, "amount": amount}},
        on_behalf_of={"id": principal},
    )


def test_a_window_rule_fires_on_the_third_refund_to_one_customer_in_an_hour(windowed):
    svc, agent = windowed()
    first = agent.defer(refund_to("C-1")).get_json()
    second = agent.defer(refund_to("C-1")).get_json()
    other = agent.defer(refund_to("C-2")).get_json()
    third = agent.defer(refund_to("C-1")).get_json()
    for d in (first, second, other):
        assert "third_refund_to_a_customer" not in factors(d["risk"])
    factor = factors(third["risk"])["third_refund_to_a_customer"]
    assert factor == {
        "rule": "third_refund_to_a_customer",
        "points": 25,
        "detail": "3 refunds to customer C-1 in 1 h",
    }


def test_the_default_policy_flags_the_third_refund_to_one_customer_in_an_hour(agent):
    made = [agent.defer(refund_to("C-88319")).get_json() for _ in range(3)]
    assert ["repeat_refunds_to_one_customer" in factors(d["risk"]) for d in made] == [
        False,
        False,
        True,
    ]
    factor = factors(made[2]["risk"])["repeat_refunds_to_one_customer"]
    assert factor["detail"] == "3 refunds to customer C-88319 in the last 1 h"
    assert factor["points"] == 25 and made[2]["status"] == "pending"


def test_a_retry_or_a_refusal_is_not_counted(windowed):
    svc, agent = windowed()
    agent.defer(refund_to("C-1"), msg_id="msg_once")
    agent.defer(refund_to("C-1"), msg_id="msg_once")  # a retry: the same deferral
    bad = refund_to("C-1")
    bad["summary"] = ""
    assert agent.defer(bad).status_code == 422
    second = agent.defer(refund_to("C-1")).get_json()
    assert "third_refund_to_a_customer" not in factors(second["risk"])


def test_a_principals_first_use_of_a_tool(windowed):
    svc, agent = windowed()
    first = agent.defer(refund_to("C-1", principal="bob@example.com")).get_json()
    assert factors(first["risk"])["first_use_of_a_tool"]["detail"] == (
        "first use: principal bob@example.com, tool billing.refund"
    )
    again = agent.defer(refund_to("C-2", principal="bob@example.com")).get_json()
    assert "first_use_of_a_tool" not in factors(again["risk"])
    other = agent.defer(refund_to("C-3", principal="carol@example.com")).get_json()
    assert "first_use_of_a_tool" in factors(other["risk"])


def test_a_sum_over_the_window(windowed):
    svc, agent = windowed()
    agent.defer(refund_to("C-1", 900))
    below = agent.defer(refund_to("C-2", 1000)).get_json()
    assert "agent_refunds_over_2000" not in factors(below["risk"])
    over = agent.defer(refund_to("C-3", 200)).get_json()
    assert factors(over["risk"])["agent_refunds_over_2000"]["detail"] == (
        "amount adds up to 2100 > 2000 for agent billing-bot in 1 d"
    )


def test_the_window_forgets_what_is_older_than_the_window(windowed):
    svc, agent = windowed()
    counters = policy_windows.counters_for(
        svc.policy, facts(args={"customer": "C-9", "amount": 1}, agent="billing-bot")
    )
    long_ago = __import__("time").time() - 3600 - 120
    policy_windows.add(svc, counters, now=long_ago)
    policy_windows.add(svc, counters, now=long_ago)
    d = agent.defer(refund_to("C-9")).get_json()
    assert "third_refund_to_a_customer" not in factors(d["risk"])


def test_with_redis_down_intake_goes_on_and_says_windows_were_not_judged(windowed, tmp_path):
    svc, agent = windowed(redis_url="redis://127.0.0.1:1/0")  # nothing listens there
    response = agent.defer(refund_to("C-1"))
    assert response.status_code == 202, response.get_json()
    factor = factors(response.get_json()["risk"])["window_unavailable"]
    assert factor["points"] == 0 and "third_refund_to_a_customer" in factor["detail"]


def test_with_redis_down_an_allow_is_withheld(make_app, make_agent, tmp_path):
    path = tmp_path / "policy.toml"
    allow = '\n[[rule]]\nid = "reads"\nkind = "tool"\nmatch = ["files.get"]\npoints = 0\n'
    path.write_text(WINDOWS + allow + 'outcome = "allow"\ndetail = "{tool} reads"\n')
    app = make_app(policy_file=str(path), agent_rate=0, redis_url="redis://127.0.0.1:1/0")
    agent = make_agent().on(app)
    d = agent.defer(refund(action={"tool": "files.get", "args": {}})).get_json()
    assert d["status"] == "pending" and d["risk"]["outcome"] == "ask"
    assert "window_unavailable" in factors(d["risk"])


@pytest.mark.parametrize(
    "params,message",
    [
        ('per = ["colour"]\nwindow = 60\nat_least = 2', "per must list"),
        ('per = ["agent"]\nwindow = 0\nat_least = 2', "window must be"),
        ('per = ["agent"]\nwindow = 60', "needs at_least or at_most"),
    ],
)
def test_a_bad_window_rule_is_refused(tmp_path, params, message):
    text = f'[[rule]]\nid = "w"\nkind = "window_count"\n{params}\npoints = 1\ndetail = "x"\n'
    with pytest.raises(SettingsError, match=message):
        policy_from(tmp_path, text)


# --- verified principals through the whole intake ---------------------------------------


@pytest.fixture
def issuer():
    made = Issuer()
    yield made
    made.close()


def test_the_default_policy_reads_a_verified_principals_groups(make_app, make_agent, issuer):
    app = make_app(principal_issuers=issuer.url, principal_audience=AUDIENCE, agent_rate=0)
    agent = make_agent().on(app)
    body = refund()
    body["on_behalf_of"]["token"] = issuer.token(email="alice@example.com", groups=["support"])
    d = agent.defer(body).get_json()
    assert d["on_behalf_of"]["verified"] is True
    assert "money_out_over_500_outside_finance" in factors(d["risk"])
    assert "unverified_principal_money_or_access" not in factors(d["risk"])
    body["on_behalf_of"]["token"] = issuer.token(email="alice@example.com", groups=["finance"])
    d = agent.defer(body).get_json()
    assert "money_out_over_500_outside_finance" not in factors(d["risk"])
