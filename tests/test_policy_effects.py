"""Rules over the effect: the default policy reads what a change does, not only its name.

Each rule of config/policy.toml that reads the diff (or an argument's value) fires on
the change it is about, with its points and detail, and stays quiet on the harmless
direction of the same change. test_policy.py covers the rules on names and sizes; the
last test here checks that the two files together cover every rule of the policy.
"""

import re
from pathlib import Path

import pytest

from review.intake.diffing import ABSENT, compute_diff
from review.intake.policy import Facts
from review.intake.policy_loading import load_policy
from review.settings import PROJECT_ROOT
from tests.helpers import refund

POLICY = load_policy(PROJECT_ROOT / "config" / "policy.toml", (25, 50, 75))


def evaluate(before=ABSENT, after=ABSENT, tool="notes.update", args=None):
    diff = compute_diff(before, after, max_changes=200, max_ms=250)
    return POLICY.evaluate(
        Facts(
            tool=tool,
            args=args or {},
            principal_id="alice@example.com",
            changed_paths=[c["path"] for c in diff["changes"]],
            change_count=diff["count"],
            changes=diff["changes"],
            diff_truncated=diff["truncated"],
        )
    )


def factors(evaluation):
    return {f["rule"]: f for f in evaluation.factors}


def points(rule):
    return next(r.points for r in POLICY.rules if r.id == rule)


STATEMENT = {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:root"}, "Action": "s3:Get"}

FIRES = [
    # backups and retention
    (
        {"backup_retention_period": 7},
        {"backup_retention_period": 0},
        "retention_to_zero",
        "/backup_retention_period lowered from 7 to 0",
    ),
    (
        {"db": {"BackupRetentionPeriod": "30"}},
        {"db": {"BackupRetentionPeriod": "7"}},
        "retention_cut",
        "/db/BackupRetentionPeriod cut from 30 to 7",
    ),
    (
        {"versioning": {"status": "Enabled"}},
        {"versioning": {"status": "Suspended"}},
        "backups_off",
        "/versioning/status switched off (Enabled to Suspended)",
    ),
    (
        {"deletion_protection": True},
        {"deletion_protection": False},
        "backups_off",
        "/deletion_protection switched off (true to false)",
    ),
    (
        {"skip_final_snapshot": False},
        {"skip_final_snapshot": True},
        "final_snapshot_skipped",
        "/skip_final_snapshot set to true: nothing is kept when it goes",
    ),
    (
        {"bucket": "b", "replication": {"to": "eu-west-1"}},
        {"bucket": "b"},
        "backup_removed",
        "/replication removed",
    ),
    # logging and monitoring
    (
        {"logging": {"enabled": True}},
        {"logging": {"enabled": False}},
        "logging_off",
        "/logging/enabled switched off (true to false)",
    ),
    (
        {"trail": {"cloudtrail_enabled": "on"}},
        {"trail": {}},
        "logging_off",
        "/trail/cloudtrail_enabled switched off (on to (none))",
    ),
    (
        {"audit_log": {"bucket": "logs"}, "name": "x"},
        {"name": "x"},
        "logging_removed",
        "/audit_log removed",
    ),
    # access widened
    ({"acl": "private"}, {"acl": "public-read"}, "made_public", "/acl set to public-read"),
    (
        {"repo": {"visibility": "private"}},
        {"repo": {"visibility": "public"}},
        "made_public",
        "/repo/visibility set to public",
    ),
    (
        {"publicly_accessible": False},
        {"publicly_accessible": True},
        "public_switch_on",
        "/publicly_accessible set to true",
    ),
    (
        {"public_access_block": {"block_public_acls": True}},
        {"public_access_block": {"block_public_acls": False}},
        "public_block_off",
        "/public_access_block/block_public_acls switched off (true to false)",
    ),
    (
        {"Statement": [STATEMENT]},
        {"Statement": [STATEMENT, {**STATEMENT, "Principal": "*"}]},
        "wildcard_grant",
        "/Statement/1/Principal grants *",
    ),
    (
        {"Statement": [STATEMENT]},
        {"Statement": [{**STATEMENT, "Action": "s3:*"}]},
        "wildcard_grant",
        "/Statement/0/Action grants s3:*",
    ),
    (
        {"user": {"role": "viewer"}},
        {"user": {"role": "Administrator"}},
        "admin_role",
        "/user/role set to Administrator",
    ),
    (
        {"member": {"roles": ["roles/viewer"]}},
        {"member": {"roles": ["roles/viewer", "roles/owner"]}},
        "admin_role",
        "/member/roles/1 set to roles/owner",
    ),
    (
        {"user": {"is_admin": False}},
        {"user": {"is_admin": True}},
        "admin_flag_on",
        "/user/is_admin set to true",
    ),
    # authentication
    (
        {"account": {"mfa_required": True}},
        {"account": {"mfa_required": False}},
        "mfa_off",
        "/account/mfa_required switched off (true to false)",
    ),
    (
        {"org": {"two_factor_requirement": "enforced"}},
        {"org": {"two_factor_requirement": "optional"}},
        "mfa_off",
        "/org/two_factor_requirement switched off (enforced to optional)",
    ),
    (
        {"user": {"mfa_devices": ["yubikey"]}, "name": "a"},
        {"user": {}, "name": "a"},
        "mfa_removed",
        "/user/mfa_devices removed",
    ),
    # network and DNS exposure
    (
        {"ingress": [{"port": 22, "cidr_blocks": ["10.0.0.0/8"]}]},
        {"ingress": [{"port": 22, "cidr_blocks": ["0.0.0.0/0"]}]},
        "open_to_the_internet",
        "/ingress/0/cidr_blocks/0 opened to 0.0.0.0/0",
    ),
    (
        {"site": {"https_only": True}},
        {"site": {"https_only": False}},
        "firewall_off",
        "/site/https_only switched off (true to false)",
    ),
    (
        {"zone": {"nameservers": ["ns1.example.com"]}},
        {"zone": {"nameservers": ["ns1.evil.test"]}},
        "nameservers_changed",
        "DNS delegation changes at /zone/nameservers/0",
    ),
    (
        {"domain": {"dnssec": "enabled"}},
        {"domain": {"dnssec": "disabled"}},
        "dnssec_off",
        "/domain/dnssec switched off (enabled to disabled)",
    ),
    # bulk deletions
    (
        {"users": [f"u{i}" for i in range(30)]},
        {"users": [f"u{i}" for i in range(5)]},
        "list_emptied",
        "/users lost 25 items",
    ),
    (
        {f"row_{i}": {"id": i} for i in range(25)},
        {},
        "many_removals",
        "25 values removed",
    ),
    # money out
    (
        {"card": {"daily_limit": 500}},
        {"card": {"daily_limit": 5000}},
        "spending_limit_raised",
        "/card/daily_limit raised from 500 to 5000",
    ),
    (
        {"payout_account": "DE89 3704"},
        {"payout_account": "GB33 BUKB"},
        "payout_destination_changed",
        "money would go elsewhere: /payout_account changes",
    ),
]


@pytest.mark.parametrize("before,after,rule,detail", FIRES, ids=[c[2] for c in FIRES])
def test_each_effect_rule_fires_on_its_change_with_its_points_and_detail(
    before, after, rule, detail
):
    evaluation = evaluate(before, after)
    factor = factors(evaluation).get(rule)
    assert factor is not None, evaluation.factors
    assert factor == {"rule": rule, "points": points(rule), "detail": detail}


ARGUMENTS = [
    (
        "aws.put_bucket_policy",
        {"policy": {"Statement": [{"Principal": "*"}]}},
        "wildcard_grant_argument",
        "Principal is *",
    ),
    (
        "s3.put_object_acl",
        {"bucket": "b", "ACL": "public-read"},
        "public_acl_argument",
        "ACL public-read",
    ),
    (
        "iam.attach_role_policy",
        {"policy_arn": "arn:aws:iam::aws:policy/AdministratorAccess"},
        "admin_role_argument",
        "policy_arn arn:aws:iam::aws:policy/AdministratorAccess",
    ),
    (
        "ec2.authorize_security_group_ingress",
        {"rules": [{"port": 3389, "cidr_ip": "0.0.0.0/0"}]},
        "open_to_the_internet_argument",
        "cidr_ip 0.0.0.0/0",
    ),
]


@pytest.mark.parametrize("tool,args,rule,detail", ARGUMENTS, ids=[c[2] for c in ARGUMENTS])
def test_argument_value_rules_read_what_the_arguments_ask_for(tool, args, rule, detail):
    factor = factors(evaluate(tool=tool, args=args)).get(rule)
    assert factor == {"rule": rule, "points": points(rule), "detail": detail}


QUIET = [
    ({"backup_retention_period": 0}, {"backup_retention_period": 7}),  # raised
    ({"backup_retention_period": 30}, {"backup_retention_period": 20}),  # a small cut
    ({"logging": {"enabled": False}}, {"logging": {"enabled": True}}),  # turned on
    ({"skip_final_snapshot": True}, {"skip_final_snapshot": False}),  # the safe way
    ({"acl": "public-read"}, {"acl": "private"}),
    (
        {"public_access_block": {"block_public_acls": False}},
        {"public_access_block": {"block_public_acls": True}},
    ),
    ({"user": {"role": "admin"}}, {"user": {"role": "viewer"}}),  # access narrowed
    ({"ingress": [{"cidr_blocks": ["0.0.0.0/0"]}]}, {"ingress": [{"cidr_blocks": ["10.0.0.0/8"]}]}),
    ({"users": ["a", "b"]}, {"users": ["a"]}),  # one item is not bulk
    ({"card": {"daily_limit": 500}}, {"card": {"daily_limit": 600}}),
    ({"catalog_enabled": True}, {"catalog_enabled": False}),  # not logging
    ({"description": "logging is on"}, {"description": "logging is off"}),  # text, no switch
    ({"flag": 1}, {"flag": 0}),  # 1 is not true
]


@pytest.mark.parametrize("before,after", QUIET)
def test_the_harmless_direction_of_the_same_change_fires_no_effect_rule(before, after):
    effect_rules = {c[2] for c in FIRES}
    assert not set(factors(evaluate(before, after))) & effect_rules


def test_a_refund_diff_stays_as_it_scored_before_the_effect_rules():
    body = refund()
    e = evaluate(body["before"], body["after"], tool="billing.refund", args=body["action"]["args"])
    # (and the 0-point note that money for an unverified principal is never auto-allowed)
    assert set(factors(e)) == {
        "payment_tool",
        "amount_over_500",
        "unverified_principal_money_or_access",
    }


def test_backup_retention_lowered_to_zero_alone_scores_at_least_high():
    e = evaluate({"backup_retention_period": 7}, {"backup_retention_period": 0})
    assert e.level in ("high", "critical")
    only = evaluate({"backup_retention_period": 1}, {"backup_retention_period": 0})
    assert set(factors(only)) == {"retention_to_zero", "retention_cut"}
    assert only.score >= 50


def test_what_a_whole_added_object_holds_is_judged_too():
    """A statement added whole brings its wildcard with it; a bucket added public too."""
    added = evaluate({"buckets": []}, {"buckets": [{"name": "b", "acl": "public-read-write"}]})
    assert factors(added)["made_public"]["detail"] == "/buckets/0/acl set to public-read-write"
    from_nothing = evaluate(ABSENT, {"Statement": [{"Principal": {"AWS": "*"}}]})
    assert (
        factors(from_nothing)["wildcard_grant"]["detail"] == "/Statement/0/Principal/AWS grants *"
    )


def test_the_detail_quotes_agent_text_shortened():
    e = evaluate({"acl": "private"}, {"acl": "public-read", "x": "y" * 500})
    assert len(factors(e)["made_public"]["detail"]) < 120


RULE_ID_IN_TEST = re.compile(r'"([a-z0-9_]+)"')


def test_every_rule_of_the_default_policy_has_a_test():
    tested = {c[2] for c in FIRES} | {c[2] for c in ARGUMENTS}
    names_test = "".join(
        (Path(__file__).parent / name).read_text()
        for name in ("test_policy.py", "test_policy_entitlements.py")
    )
    tested |= set(RULE_ID_IN_TEST.findall(names_test))
    missing = {r.id for r in POLICY.rules} - tested
    assert not missing, f"rules without a test: {sorted(missing)}"
