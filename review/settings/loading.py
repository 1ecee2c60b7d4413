"""The typed `Settings`, and how they are loaded: defaults, environment, overrides; checked."""

from __future__ import annotations

import os
import secrets
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from review.bundled import SOURCE_ROOT, bundled, default_instance_dir, resolve
from review.settings.checks import check_oidc, check_principals, check_slack, complete_audit_witness
from review.settings.values import PARSERS, SettingsError, env_name

PROJECT_ROOT = SOURCE_ROOT  # a checkout's root (review/bundled.py says where files are)
DEFAULTS_FILE = bundled("config") / "defaults.toml"


@dataclass(frozen=True)
class Settings:
    instance_dir: str
    database_url: str
    redis_url: str
    secret_key: str
    secret_key_fallbacks: tuple[str, ...]
    max_body_bytes: int
    max_json_depth: int
    default_expires_in: int
    agent_max_pending: int
    agent_rate: int
    long_polls_per_agent: int
    policy_file: str
    risk_levels: tuple[int, int, int]
    priority_age_seconds_per_point: int
    priority_expiry_seconds_per_point: int
    diff_max_changes: int
    diff_max_ms: int
    batch_size: int
    lease_seconds: int
    undo_seconds: int
    two_person_level: str
    auto_allow_max_level: str
    approval_ttl: int
    public_url: str
    receipt_key_file: str
    session_cookie_secure: bool
    login_failures_per_account: int
    login_failures_per_address: int
    trusted_proxies: int
    retry_schedule: tuple[int, ...]
    allow_private_callbacks: bool
    delivery_deadline: int
    delivery_concurrency: int
    delivery_per_agent: int
    breaker_flood: tuple[int, int] | None
    breaker_rejections: int
    secret_overlap: int
    checkpoint_interval: int
    audit_shards: int
    audit_key_file: str
    audit_witness_file: str
    audit_witness_url: str
    audit_witness_secret: str
    audit_redact: tuple[str, ...]
    demo: bool
    min_read_seconds: int
    log_format: str
    principal_issuers: tuple[str, ...]
    principal_jwks_url: str
    principal_audience: str
    principal_groups_claim: str
    metrics_token: str
    worker_stale_after: int
    oidc_issuer: str
    oidc_client_id: str
    oidc_client_secret: str
    oidc_scopes: str
    oidc_username_claim: str
    oidc_groups_claim: str
    oidc_admin_groups: tuple[str, ...]
    oidc_reviewer_groups: tuple[str, ...]
    oidc_auditor_groups: tuple[str, ...]
    slack_bot_token: str
    slack_signing_secret: str
    slack_channel: str
    slack_api_url: str
    smtp_url: str
    mail_from: str
    notify_webhook_url: str
    notify_level: str
    escalate_after: int
    notify_remind_before: int
    notify_digest_hour: int
    notify_retry_schedule: tuple[int, ...]
    notify_deadline: int
    notify_batch_at: int

    @property
    def sso_enabled(self) -> bool:
        """Log in with SSO: all three of issuer, client id and secret are set."""
        return bool(self.oidc_issuer and self.oidc_client_id and self.oidc_client_secret)

    @property
    def instance_path(self) -> Path:
        return Path(self.instance_dir)

    @property
    def policy_path(self) -> Path:
        return resolve(self.policy_file)


def load_settings(
    environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Defaults, then the environment, then `overrides` (tests); validated and completed."""
    environ = os.environ if environ is None else environ
    with DEFAULTS_FILE.open("rb") as fh:
        raw: dict[str, Any] = tomllib.load(fh)
    unknown = set(raw) - set(PARSERS)
    if unknown:
        raise SettingsError(f"config/defaults.toml has unknown keys: {', '.join(sorted(unknown))}")
    for key in PARSERS:
        name = env_name(key)
        if name in environ:
            raw[key] = environ[name]
    for key, value in (overrides or {}).items():
        if key not in PARSERS:
            raise SettingsError(f"unknown setting {key!r}")
        raw[key] = value
    missing = set(PARSERS) - set(raw)
    if missing:
        raise SettingsError(f"no default for {', '.join(sorted(missing))}")
    values = {key: PARSERS[key](env_name(key), raw[key]) for key in PARSERS}

    instance = (
        Path(values["instance_dir"]).resolve() if values["instance_dir"] else default_instance_dir()
    )
    values["instance_dir"] = str(instance)
    if not values["database_url"]:
        values["database_url"] = f"sqlite:///{instance / 'countersign.db'}"
    if not values["secret_key"]:
        values["secret_key"] = _instance_secret_key(instance)
    if not values["audit_key_file"]:
        values["audit_key_file"] = str(instance / "audit_ed25519.pem")
    elif not Path(values["audit_key_file"]).is_absolute():
        values["audit_key_file"] = str(resolve(values["audit_key_file"]))
    if not values["receipt_key_file"]:
        values["receipt_key_file"] = str(instance / "receipt_ed25519.pem")
    elif not Path(values["receipt_key_file"]).is_absolute():
        values["receipt_key_file"] = str(resolve(values["receipt_key_file"]))
    complete_audit_witness(values, instance)
    check_principals(values)
    check_oidc(values)
    check_slack(values)
    if values["smtp_url"] and not values["mail_from"]:
        raise SettingsError(
            f"{env_name('mail_from')} must be set when {env_name('smtp_url')} is (the sender)"
        )
    if not Path(values["policy_file"]).is_absolute():
        values["policy_file"] = str(resolve(values["policy_file"]))
    if not Path(values["policy_file"]).is_file():
        raise SettingsError(f"{env_name('policy_file')}: no policy file at {values['policy_file']}")
    assert {f.name for f in fields(Settings)} == set(values)
    return Settings(**values)


def _instance_secret_key(instance: Path) -> str:
    """The generated SECRET_KEY, created once (mode 0600) and reused by every process."""
    instance.mkdir(parents=True, exist_ok=True)
    path = instance / "secret_key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another process may be writing it right now
            key = path.read_text().strip()
            if key:
                return key
            time.sleep(0.02)
        raise SettingsError(
            f"SECRET_KEY: {path} is empty; delete it to generate a new one"
        ) from None
    with os.fdopen(fd, "w") as fh:
        key = secrets.token_urlsafe(48)
        fh.write(key + "\n")
    return key
