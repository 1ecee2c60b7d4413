"""The checks across settings: values that only make sense together, and paths completed."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from review.bundled import resolve
from review.settings.values import SettingsError, env_name


def complete_audit_witness(values: dict[str, Any], instance: Path) -> None:
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


def check_principals(values: dict[str, Any]) -> None:
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


def check_oidc(values: dict[str, Any]) -> None:
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


def check_slack(values: dict[str, Any]) -> None:
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
