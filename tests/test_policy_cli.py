"""`flask policy check [FILE]` and `flask policy test DEFERRAL.json` (PROTOCOL.md section 10)."""

import json

import pytest

from tests.helpers import refund

GOOD_RULE = '[[rule]]\nid = "a"\nkind = "tool"\nmatch = ["x.*"]\npoints = 5\ndetail = "{tool}"\n'


def test_check_passes_the_default_policy(runner, svc):
    result = runner.invoke(args=["policy", "check"])
    assert result.exit_code == 0, result.output
    assert str(svc.settings.policy_path) in result.output and svc.policy.version in result.output


@pytest.mark.parametrize(
    "text,line,reason",
    [
        (
            GOOD_RULE
            + '\n[[rule]]\nid = "b"\nkind = "tool"\nmatch = ["y"]\npoints = 500\ndetail = "d"\n',
            12,
            "points must be",
        ),
        (
            GOOD_RULE + '\n[[rule]]\nid = "b"\nkind = "argument_over"\npoints = 1\ndetail = "d"\n',
            8,
            "keys is required",
        ),
        (GOOD_RULE + 'outcome = "maybe"\n', 7, "outcome must be one of allow, ask, deny"),
        (GOOD_RULE + 'colour = "red"\n', 7, "unknown keys ['colour']"),
        (GOOD_RULE + "\n" + GOOD_RULE, 9, "duplicate rule ids ['a']"),
        (GOOD_RULE + 'fields = ["x"]\n', 7, "unknown keys ['fields'] for kind tool"),
        (
            '[[rule]]\nid = "b"\nkind = "number_lowered"\nfields = ["x"]\nby_ratio = 2\n'
            'points = 1\ndetail = "d"\n',
            5,
            "by_ratio must be between 0 and 1",
        ),
        (
            '[[rule]]\nid = "b"\nkind = "field_value"\nfields = ["x"]\npoints = 1\ndetail = "d"\n',
            1,
            "needs at least one of from, to, to_like",
        ),
        (
            '[[rule]]\nid = "b"\nkind = "turned_off"\nfields = ["x"]\npoints = 1\n'
            'detail = "{nope}"\n',
            6,
            "unknown placeholder",
        ),
        ("levels = 3\n" + GOOD_RULE, 1, "unknown top-level keys"),
        (GOOD_RULE + "points = [1,\n", 7, "Invalid value"),
        (GOOD_RULE + "x = = 1\n", 7, "(at line 7"),
    ],
)
def test_check_exits_1_with_the_line_and_reason_of_the_first_error(
    runner, tmp_path, text, line, reason
):
    path = tmp_path / "draft.toml"
    path.write_text(text)
    result = runner.invoke(args=["policy", "check", str(path)])
    assert result.exit_code == 1
    assert f"{path}:{line}: " in result.output and reason in result.output, result.output


def test_test_prints_score_level_factors_outcome_and_route(runner, tmp_path):
    body = refund(
        action={"tool": "aws.rds.modify", "args": {"db": "main"}},
        before={"backup_retention_period": 7},
        after={"backup_retention_period": 0},
    )
    path = tmp_path / "deferral.json"
    path.write_text(json.dumps(body))
    result = runner.invoke(args=["policy", "test", str(path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "score    100 (critical)"
    assert "   +50  retention_to_zero: /backup_retention_period lowered from 7 to 0" in lines
    assert "outcome  ask" in lines and "route    any reviewer, 2 approvals" in lines
    as_json = json.loads(runner.invoke(args=["policy", "test", str(path), "--json"]).output)
    assert as_json["score"] == 100 and as_json["level"] == "critical"
    assert as_json["outcome"] == "ask" and as_json["rule"] is None
    assert as_json["route"] == {
        "group": None,
        "quorum": None,
        "rule": None,
        "required_approvals": 2,  # critical: COUNTERSIGN_TWO_PERSON_LEVEL's default quorum
    }
    assert {f["rule"] for f in as_json["factors"]} >= {"retention_to_zero", "infra_change"}


def test_test_tries_a_draft_policy_and_shows_its_outcome(runner, tmp_path):
    draft = tmp_path / "draft.toml"
    draft.write_text(
        GOOD_RULE.replace('match = ["x.*"]', 'match = ["files.*"]') + 'outcome = "deny"\n'
    )
    path = tmp_path / "deferral.json"
    path.write_text(json.dumps(refund(action={"tool": "files.get", "args": {}})))
    result = runner.invoke(args=["policy", "test", str(path), "--policy", str(draft)])
    assert result.exit_code == 0, result.output
    assert "outcome  deny (rule a)" in result.output.splitlines()


def test_test_refuses_what_is_not_a_deferral_request(runner, tmp_path):
    path = tmp_path / "deferral.json"
    path.write_text(json.dumps({"action": {"tool": "x"}}))
    result = runner.invoke(args=["policy", "test", str(path)])
    assert result.exit_code == 1 and "/summary required" in result.output
