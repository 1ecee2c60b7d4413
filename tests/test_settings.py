"""Settings: config/ defaults, environment overrides, and wrong values that stop start-up."""

import os

import pytest

from review.settings import SettingsError, load_settings
from tests.helpers import run_flask


def test_it_reads_the_defaults_from_config(tmp_path):
    s = load_settings(environ={}, overrides={"instance_dir": str(tmp_path)})
    assert s.agent_max_pending == 1000
    assert s.default_expires_in == 86400
    assert s.risk_levels == (25, 50, 75)
    assert s.database_url == f"sqlite:///{tmp_path / 'countersign.db'}"
    assert s.redis_url == ""
    assert s.demo is False


def test_environment_variables_override_the_defaults(tmp_path):
    env = {
        "COUNTERSIGN_AGENT_RATE": "7",
        "COUNTERSIGN_DEMO": "1",
        "DATABASE_URL": "postgresql://127.0.0.1/test",
        "REDIS_URL": "redis://127.0.0.1:6379/3",
        "SECRET_KEY": "k" * 40,
        "COUNTERSIGN_INSTANCE_DIR": str(tmp_path),
    }
    s = load_settings(environ=env)
    assert s.agent_rate == 7
    assert s.demo is True
    assert s.database_url == "postgresql+psycopg://127.0.0.1/test"
    assert s.redis_url == "redis://127.0.0.1:6379/3"
    assert s.secret_key == "k" * 40


@pytest.mark.parametrize(
    "name,value",
    [
        ("COUNTERSIGN_AGENT_RATE", "fast"),
        ("COUNTERSIGN_AGENT_MAX_PENDING", "-1"),
        ("COUNTERSIGN_DEFAULT_EXPIRES_IN", "10"),
        ("COUNTERSIGN_DEMO", "maybe"),
        ("COUNTERSIGN_RISK_LEVELS", "50,25,75"),
        ("DATABASE_URL", "mysql://localhost/x"),
        ("REDIS_URL", "http://localhost"),
        ("COUNTERSIGN_POLICY_FILE", "/nonexistent/policy.toml"),
    ],
)
def test_a_wrong_setting_fails_naming_the_variable(tmp_path, name, value):
    env = {"COUNTERSIGN_INSTANCE_DIR": str(tmp_path), name: value}
    with pytest.raises(SettingsError) as err:
        load_settings(environ=env)
    assert name in str(err.value)


def test_the_app_refuses_to_start_with_a_wrong_setting_and_says_which(tmp_path):
    env = {
        **os.environ,
        "COUNTERSIGN_INSTANCE_DIR": str(tmp_path),
        "COUNTERSIGN_BATCH": "x",
        "COUNTERSIGN_AGENT_RATE": "lots",
    }
    out = run_flask("agents", "list", env=env, timeout=60)
    assert out.returncode != 0
    assert "COUNTERSIGN_AGENT_RATE" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_secret_key_is_generated_once_and_kept_private(tmp_path):
    first = load_settings(environ={"COUNTERSIGN_INSTANCE_DIR": str(tmp_path)})
    second = load_settings(environ={"COUNTERSIGN_INSTANCE_DIR": str(tmp_path)})
    assert first.secret_key == second.secret_key and len(first.secret_key) >= 32
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


def test_a_broken_policy_file_fails_naming_the_rule(tmp_path):
    policy = tmp_path / "policy.toml"
    policy.write_text('[[rule]]\nid = "big"\nkind = "argument_over"\npoints = 10\ndetail = "x"\n')
    with pytest.raises(SettingsError, match="rule 'big': keys is required"):
        from review.intake.policy_loading import load_policy

        load_policy(policy, (25, 50, 75))


def test_secret_key_fallbacks_are_read_unprefixed_and_split_on_commas(tmp_path):
    env = {"SECRET_KEY_FALLBACKS": " old-one ,, older-one "}
    s = load_settings(environ=env, overrides={"instance_dir": str(tmp_path)})
    assert s.secret_key_fallbacks == ("old-one", "older-one")
