"""The rule index passes over rules that cannot match, and only those: a deferral judged
through it gets the factors, outcome and rule that asking every rule gives."""

import pytest

from review.intake.diffing import ABSENT, compute_diff
from review.intake.policy import Facts
from review.intake.policy_index import MEMO_LIMIT
from review.intake.policy_loading import load_policy
from review.settings import PROJECT_ROOT

EXTRA = """
[[rule]]
id = "refunds_by_bots"
kind = "tool"
match = ["billing.*", "*.refund_*"]
points = 5
detail = "{tool} ({pattern})"

[[rule]]
id = "night_shift"
kind = "principal"
match = ["svc-*", "system:*"]
points = 7
detail = "{principal}"

[[rule]]
id = "gold_customer"
kind = "label"
key = "tier"
values = ["gold"]
points = 3
detail = "{key}={value}"

[[rule]]
id = "mixed_case_keys"
kind = "argument_over"
keys = ["Limit", "QUOTA"]
threshold = 10
points = 4
outcome = "deny"
detail = "{key} {value}"

[[rule]]
id = "billing_bot_only"
kind = "tool"
match = ["*"]
points = 1
agents = ["billing-bot"]
detail = "{tool}"

[[rule]]
id = "vault_opened"
kind = "field_value"
fields = ["*Vault*"]
to = ["open"]
points = 6
detail = "{path}"

[[rule]]
id = "token_touched"
kind = "diff_field"
fields = ["API_Token"]
points = 2
detail = "{path}"

[[rule]]
id = "read_only"
kind = "tool"
match = ["files.get"]
points = 0
outcome = "allow"
detail = "{tool} only reads"
"""


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    path = tmp_path_factory.mktemp("policy") / "policy.toml"
    path.write_text((PROJECT_ROOT / "config" / "policy.toml").read_text() + EXTRA)
    return load_policy(path, (25, 50, 75))


def facts(tool, args, before=ABSENT, after=ABSENT, **kw):
    diff = compute_diff(before, after, max_changes=1000, max_ms=1000)
    return Facts(
        tool=tool,
        args=args,
        principal_id=kw.pop("principal", "alice@example.com"),
        changed_paths=[c["path"] for c in diff["changes"]],
        change_count=diff["count"],
        changes=diff["changes"],
        **kw,
    )


CASES = [
    facts("billing.refund", {"invoice": "INV-1", "amount": 740}),
    facts("crm.refund_all", {"amount": 9000, "to": ["bob@gmail.com"]}, labels={"tier": "gold"}),
    facts("files.get", {"path": "/x"}, agent="billing-bot"),
    facts("files.get", {"path": "/x"}, agent="other-bot", principal="svc-nightly"),
    facts("quota.set", {"limit": 11, "nested": {"quota": 50}}),
    facts("quota.set", {"LIMIT": 3}, labels={"tier": "silver", "env": "prod"}),
    facts(
        "vault.edit",
        {},
        before={"Vault": {"state": "closed", "members": ["a", "b"], "mfa": True}},
        after={"Vault": {"state": "open", "members": ["a"], "mfa": False}},
    ),
    facts("db.delete_rows", {"ids": list(range(101))}, principal="system:nightly"),
    facts(
        "keys.rotate",
        {},
        before={"Auth": {"api_token": "a", "expiry": 1}},
        after={"Auth": {"api_token": "b", "expiry": 2}},
    ),
    facts("email.send", {"webhook_url": "https://evil.example.net/x"}, agent_score=90),
]


@pytest.mark.parametrize("case", CASES, ids=lambda f: f"{f.tool}-{f.agent}")
def test_it_judges_as_asking_every_rule_would(policy, case):
    every = [f for r in policy.rules_for(case.agent) if (f := r.apply(case)) is not None]
    indexed = [f for r in policy.candidates(case) if (f := r.apply(case)) is not None]
    assert indexed == every
    assert every, "each case matches at least one rule"


def test_it_asks_few_rules_for_a_deferral_that_matches_few(policy):
    case = CASES[0]
    assert len(policy.candidates(case)) < len(policy.rules_for(case.agent)) / 3


def test_a_diff_field_rule_is_asked_only_when_a_changed_path_has_one_of_its_fields(policy):
    rotated = next(case for case in CASES if case.tool == "keys.rotate")
    assert "token_touched" in [r.id for r in policy.candidates(rotated)]
    assert "token_touched" not in [r.id for r in policy.candidates(CASES[0])]


def test_its_memo_of_globs_stays_bounded(policy):
    index = policy._shared_index
    for i in range(MEMO_LIMIT + 10):
        policy.candidates(facts(f"tool.{i}", {}))
    assert len(index._memo) <= MEMO_LIMIT
    assert [r.id for r in policy.candidates(facts("billing.refund", {}))][:1] == ["payment_tool"]
