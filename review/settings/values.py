"""Every setting's parser: how its raw text (a default or an environment variable) becomes
its value, or a SettingsError naming the variable."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

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
