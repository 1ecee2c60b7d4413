"""Settings: defaults from config/defaults.toml, overridden by the environment.

`DATABASE_URL`, `REDIS_URL`, `SECRET_KEY` and `SECRET_KEY_FALLBACKS` are read as they are;
every other key `foo` is read from `COUNTERSIGN_FOO`. A value that does not parse or is
out of range raises SettingsError naming the variable, so a wrong setting stops the app
at start.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from review.bundled import SOURCE_ROOT, bundled, default_instance_dir, resolve

PROJECT_ROOT = SOURCE_ROOT  # a checkout's root (review/bundled.py says where files are)
DEFAULTS_FILE = bundled("config") / "defaults.toml"
UNPREFIXED = {"database_url", "redis_url", "secret_key", "secret_key_fallbacks"}


class SettingsError(ValueError):
    """A setting is missing, does not parse or is out of range."""


def env_name(key: str) -> str:
    return key.upper() if key in UNPREFIXED else f"COUNTERSIGN_{key.upper()}"


def _int_range(low: int, high: int | None = None) -> Callable[[str, Any], int]:
    def parse(name: str, raw: Any) -> int:
        try:
            value = raw if isinstance(raw, int) and not isinstance(raw, bool) else int(str(raw))
        except ValueError:
            raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
        if value < low or (high is not None and value > high):
            bound = f"from {low} to {high}" if high is not None else f"of at least {low}"
            raise SettingsError(f"{name} must be a whole number {bound}, got {value}")
        return value

    return parse


def _bool(name: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise SettingsError(f"{name} must be 0 or 1, got {raw!r}")


def _text(name: str, raw: Any) -> str:
    return str(raw)


def _key_list(name: str, raw: Any) -> tuple[str, ...]:
    """Comma-separated keys (older SECRET_KEYs); blanks between commas are ignored."""
    return tuple(k.strip() for k in str(raw).split(",") if k.strip())


def _public_url(name: str, raw: Any) -> str:
    """The service's own base URL: http(s)://host[:port][/path], without a trailing slash."""
    text = str(raw).strip().rstrip("/")
    if not re.fullmatch(r"[Hh][Tt][Tt][Pp][Ss]?://[^\s/?#@]+(/[^\s?#]*)?", text):
        raise SettingsError(
            f"{name} must be an http(s):// URL like https://countersign.example.com"
        )
    return text


def _database_url(name: str, raw: Any) -> str:
    text = str(raw)
    if text and not (text.startswith("sqlite") or text.startswith("postgresql")):
        raise SettingsError(
            f"{name} must be a sqlite:/// or postgresql+psycopg:// URL, got {text.split(':')[0]!r}"
        )
    if text.startswith("postgresql://") or text.startswith("postgres://"):
        # psycopg 3 is the driver we ship; make the short form mean it.
        text = "postgresql+psycopg://" + text.split("://", 1)[1]
    return text


def _redis_url(name: str, raw: Any) -> str:
    text = str(raw)
    if text and not text.startswith(("redis://", "rediss://", "unix://")):
        raise SettingsError(f"{name} must be a redis://, rediss:// or unix:// URL")
    return text


def _choice(*allowed: str) -> Callable[[str, Any], str]:
    def parse(name: str, raw: Any) -> str:
        text = str(raw).strip().lower()
        if text not in allowed:
            raise SettingsError(f"{name} must be one of {', '.join(allowed)}, got {raw!r}")
        return text

    return parse


def _schedule(name: str, raw: Any) -> tuple[int, ...]:
    try:
        delays = tuple(int(p) for p in str(raw).split(","))
    except ValueError:
        raise SettingsError(f"{name} must be seconds separated by commas, got {raw!r}") from None
    if not delays or any(d < 1 or d > 7 * 86400 for d in delays) or len(delays) > 50:
        raise SettingsError(f"{name} must hold 1 to 50 delays of 1 s to 7 days, got {raw!r}")
    return delays


def _risk_levels(name: str, raw: Any) -> tuple[int, int, int]:
    try:
        parts = tuple(int(p) for p in str(raw).split(","))
    except ValueError:
        raise SettingsError(f"{name} must be three whole numbers like 25,50,75") from None
    if len(parts) != 3 or not (0 < parts[0] < parts[1] < parts[2] <= 100):
        raise SettingsError(f"{name} must be three increasing numbers in 1..100, got {raw!r}")
    return parts  # type: ignore[return-value]


def parse_flood(name: str, raw: Any) -> tuple[int, int] | None:
    """`N/M` (more than N deferrals in M seconds), or `0` for off."""
    text = str(raw).strip()
    if text in ("0", ""):
        return None
    count, _, window = text.partition("/")
    if not (count.isdigit() and window.isdigit()):
        raise SettingsError(f"{name} must look like 200/60 (N deferrals in M seconds) or 0")
    n, m = int(count), int(window)
    if not (1 <= n <= 1_000_000 and 1 <= m <= 86400):
        raise SettingsError(f"{name}: N must be 1..1000000 and M 1..86400 seconds, got {text}")
    return n, m


def _paths(name: str, raw: Any) -> tuple[str, ...]:
    """Comma-separated dotted paths (`action.args.card`, `*` one step, `**` any depth)."""
    paths = tuple(p.strip() for p in str(raw).split(",") if p.strip())
    for path in paths:
        parts = path.split(".")
        if any(not part for part in parts) or len(path) > 300:
            raise SettingsError(f"{name}: {path!r} is not a dotted path like action.args.card")
    return paths


def _issuer_urls(name: str, raw: Any) -> tuple[str, ...]:
    """Comma-separated issuer URLs: https, or http on a loopback host (local tests)."""
    urls = tuple(u.strip() for u in str(raw).split(",") if u.strip())
    for url in urls:
        if not is_https_or_loopback(url):
            raise SettingsError(
                f"{name}: {url!r} must be an https:// URL (http:// only on loopback)"
            )
    return urls


def _optional_url(name: str, raw: Any) -> str:
    text = str(raw).strip()
    if text and not is_https_or_loopback(text):
        raise SettingsError(f"{name}: {text!r} must be an https:// URL (http:// only on loopback)")
    return text


def is_https_or_loopback(url: str) -> bool:
    """https anywhere; http only to this machine (an identity provider's keys in the clear
    could be swapped on the way)."""
    match = re.fullmatch(
        r"([Hh][Tt][Tt][Pp][Ss]?)://(\[[^\]]+\]|[^\s/?#@:]+)(:\d+)?(/[^\s?#]*)?", url
    )
    if not match:
        return False
    host = match.group(2).strip("[]").lower()
    loopback = host == "localhost" or host == "::1" or re.fullmatch(r"127(\.\d{1,3}){3}", host)
    return match.group(1).lower() == "https" or bool(loopback)


def _smtp_url(name: str, raw: Any) -> str:
    """smtp://[user:pass@]host[:port][?starttls=1] or smtps://...; empty for no e-mail."""
    text = str(raw).strip()
    if not text:
        return ""
    parts = urlsplit(text)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise SettingsError(
            f"{name} must look like smtp://user:pass@host:587?starttls=1 or smtps://host"
        )
    try:
        parts.port  # noqa: B018  (raises on a port that is no number)
    except ValueError:
        raise SettingsError(f"{name}: the port must be a number") from None
    query = parts.query.lower()
    if query and query not in ("starttls=1", "starttls=true", "starttls=0", "starttls=false"):
        raise SettingsError(f"{name}: the only option is ?starttls=1")
    if parts.scheme == "smtps" and query.endswith(("=1", "=true")):
        raise SettingsError(f"{name}: smtps:// is TLS already; starttls is for smtp://")
    return text


def _mail_from(name: str, raw: Any) -> str:
    """The sender's address (a display name may go with it: Countersign <cs@example.com>)."""
    text = str(raw).strip()
    if any(c in text for c in "\r\n") or (text and "@" not in text):
        raise SettingsError(f"{name} must be an e-mail address, got {text!r}")
    return text


def _optional_http_url(name: str, raw: Any) -> str:
    text = str(raw).strip()
    if text and not re.fullmatch(r"[Hh][Tt][Tt][Pp][Ss]?://[^\s/?#@]+(/[^\s#]*)?", text):
        raise SettingsError(f"{name} must be an http(s):// URL, got {text!r}")
    return text


PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "instance_dir": _text,
    "database_url": _database_url,
    "redis_url": _redis_url,
    "secret_key": _text,
    "secret_key_fallbacks": _key_list,
    "max_body_bytes": _int_range(1024, 64 * 1024 * 1024),
    "max_json_depth": _int_range(2, 256),
    "default_expires_in": _int_range(60, 604800),
    "agent_max_pending": _int_range(0),
    "agent_rate": _int_range(0),
    "long_polls_per_agent": _int_range(0, 10000),
    "policy_file": _text,
    "risk_levels": _risk_levels,
    "priority_age_seconds_per_point": _int_range(1),
    "priority_expiry_seconds_per_point": _int_range(1),
    "diff_max_changes": _int_range(1, 100000),
    "diff_max_ms": _int_range(1, 60000),
    "batch_size": _int_range(1, 50),
    "lease_seconds": _int_range(30, 86400),
    # At most the shortest lease: a decision's window always ends inside its claim.
    "undo_seconds": _int_range(0, 30),
    "two_person_level": _choice("low", "medium", "high", "critical", "none"),
    "auto_allow_max_level": _choice("none", "low", "medium", "high", "critical"),
    "approval_ttl": _int_range(1, 30 * 86400),
    "public_url": _public_url,
    "receipt_key_file": _text,
    "session_cookie_secure": _bool,
    "login_failures_per_account": _int_range(1, 1000),
    "login_failures_per_address": _int_range(1, 100000),
    "trusted_proxies": _int_range(0, 10),
    "retry_schedule": _schedule,
    "allow_private_callbacks": _bool,
    "delivery_deadline": _int_range(1, 60),
    "delivery_concurrency": _int_range(1, 512),
    "delivery_per_agent": _int_range(1, 64),
    "breaker_flood": parse_flood,
    "breaker_rejections": _int_range(0, 10000),
    "secret_overlap": _int_range(0, 30 * 86400),
    "checkpoint_interval": _int_range(10, 7 * 86400),
    "audit_shards": _int_range(1, 256),
    "audit_key_file": _text,
    "audit_witness_file": _text,
    "audit_witness_url": _text,
    "audit_witness_secret": _text,
    "audit_redact": _paths,
    "demo": _bool,
    # --- reading (issue 15): see config/defaults.toml
    "min_read_seconds": _int_range(0, 600),
    "log_format": _choice("text", "json"),
    # Verified principals (PROTOCOL.md section 17)
    "principal_issuers": _issuer_urls,
    "principal_jwks_url": _optional_url,
    "principal_audience": _text,
    "principal_groups_claim": _text,
    # --- metrics and the worker's heartbeat (docs/METRICS.md) ---
    "metrics_token": _text,
    "worker_stale_after": _int_range(10, 86400),
    # --- single sign-on (review/web/sso.py, docs/SSO.md) ---
    "oidc_issuer": _text,
    "oidc_client_id": _text,
    "oidc_client_secret": _text,
    "oidc_scopes": _text,
    "oidc_username_claim": _text,
    "oidc_groups_claim": _text,
    "oidc_admin_groups": _key_list,
    "oidc_reviewer_groups": _key_list,
    "oidc_auditor_groups": _key_list,
    # --- Slack (PROTOCOL.md section 14; docs/NOTIFICATIONS.md) ---
    "slack_bot_token": _text,
    "slack_signing_secret": _text,
    "slack_channel": _text,
    "slack_api_url": _optional_url,
    # --- notifications (PROTOCOL.md section 14; docs/NOTIFICATIONS.md) ---
    "smtp_url": _smtp_url,
    "mail_from": _mail_from,
    "notify_webhook_url": _optional_http_url,
    "notify_level": _choice("low", "medium", "high", "critical", "none"),
    "escalate_after": _int_range(1, 7 * 86400),
    "notify_remind_before": _int_range(0, 7 * 86400),
    "notify_digest_hour": _int_range(0, 23),
    "notify_retry_schedule": _schedule,
    "notify_deadline": _int_range(1, 60),
    "notify_batch_at": _int_range(2, 1000),
}


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
    _complete_audit_witness(values, instance)
    _check_principals(values)
    _check_oidc(values)
    _check_slack(values)
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


def _complete_audit_witness(values: dict[str, Any], instance: Path) -> None:
    """The witness file's path (default under instance/); a witness URL needs a secret."""
    if not values["audit_witness_file"]:
        values["audit_witness_file"] = str(instance / "audit-witness.jsonl")
    elif not Path(values["audit_witness_file"]).is_absolute():
        values["audit_witness_file"] = str(resolve(values["audit_witness_file"]))
    url, secret = values["audit_witness_url"], values["audit_witness_secret"]
    if url and not url.startswith(("http://", "https://")):
        raise SettingsError(f"{env_name('audit_witness_url')} must be an http(s):// URL")
    if url and not secret:
        raise SettingsError(
            f"{env_name('audit_witness_secret')} must be set when "
            f"{env_name('audit_witness_url')} is (a whsec_ secret the witness shares)"
        )
    try:
        base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except ValueError:
        raise SettingsError(f"{env_name('audit_witness_secret')} must be base64") from None


def _check_principals(values: dict[str, Any]) -> None:
    """A JWKS URL names the keys of exactly one issuer; trusted issuers need an audience,
    so a token an issuer made for another application is never accepted here."""
    issuers = values["principal_issuers"]
    if values["principal_jwks_url"] and len(issuers) != 1:
        raise SettingsError(
            f"{env_name('principal_jwks_url')} is for one issuer: set "
            f"{env_name('principal_issuers')} to exactly that issuer's URL"
        )
    if issuers and not values["principal_audience"].strip():
        raise SettingsError(
            f"{env_name('principal_audience')} must be set when "
            f"{env_name('principal_issuers')} is (the audience tokens must be issued for)"
        )
    if not values["principal_groups_claim"].strip():
        raise SettingsError(f"{env_name('principal_groups_claim')} must name a claim")


def _check_oidc(values: dict[str, Any]) -> None:
    """Single sign-on needs all three of issuer, client id and secret, or none of them;
    the issuer is https (plain http only on a loopback host, for local providers)."""
    names = ("oidc_issuer", "oidc_client_id", "oidc_client_secret")
    given = [name for name in names if values[name]]
    if given and len(given) < 3:
        missing = ", ".join(env_name(n) for n in names if n not in given)
        raise SettingsError(f"single sign-on needs {missing} too (or none of the three)")
    issuer = values["oidc_issuer"] = values["oidc_issuer"].strip().rstrip("/")
    if issuer:
        parts = urlsplit(issuer)
        loopback = parts.hostname in ("127.0.0.1", "::1", "localhost")
        if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
            raise SettingsError(
                f"{env_name('oidc_issuer')} must be an https:// URL (http only on loopback)"
            )
    for name in ("oidc_username_claim", "oidc_groups_claim"):
        values[name] = values[name].strip()
        if not values[name]:
            raise SettingsError(f"{env_name(name)} must name a claim")


SLACK_KEYS = ("slack_bot_token", "slack_signing_secret", "slack_channel")


def _check_slack(values: dict[str, Any]) -> None:
    """Slack needs its bot token, signing secret and channel together, or none of them:
    a message whose buttons nobody can verify, or verified clicks with nowhere to post,
    would be a channel half on. The API URL (tests: a local stand-in) ends with a slash."""
    for name in SLACK_KEYS:
        values[name] = values[name].strip()
    given = [name for name in SLACK_KEYS if values[name]]
    if given and len(given) < len(SLACK_KEYS):
        missing = ", ".join(env_name(n) for n in SLACK_KEYS if n not in given)
        raise SettingsError(f"Slack needs {missing} too (or none of the three)")
    url = values["slack_api_url"]
    if not url:
        raise SettingsError(f"{env_name('slack_api_url')} must be set (https://slack.com/api/)")
    values["slack_api_url"] = url.rstrip("/") + "/"


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
