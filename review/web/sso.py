"""Log in with SSO: OpenID Connect's authorization code flow (PKCE, state, nonce) by
authlib's Flask client, on when COUNTERSIGN_OIDC_ISSUER, _CLIENT_ID and _CLIENT_SECRET
are set (PROTOCOL.md section 15; docs/SSO.md).

`POST /login/sso` (the login page's **Log in with SSO** button, with its CSRF token)
sends the browser to the provider; `GET /login/sso/callback` checks the state, trades
the code (with the PKCE verifier) for tokens, checks the ID token (signature, issuer,
audience, nonce), and hands the claims to review/sso_accounts.py, which makes or updates
the user. The session then starts as a password login's does (review/web/auth.py).
Every refusal is audited as `login.sso_refused` with its reason.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from authlib.common.errors import AuthlibBaseError
from authlib.integrations.flask_client import OAuth, OAuthError
from flask import (
    Blueprint,
    Flask,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import login_user
from joserfc.errors import JoseError

from review import login_throttle, sso_accounts
from review.audit.chain import record_event
from review.services import Services, current_services
from review.web.auth import SESSION_TOKEN, LoginForm, Reviewer, local_path

log = logging.getLogger(__name__)
bp = Blueprint("sso", __name__)
EXTENSION = "countersign_sso"
NEXT = "sso_next"  # where to go after the login (a path here), kept across the round trip
CALLBACK = "/login/sso/callback"
HTTP_TIMEOUT = 10  # seconds for each call to the provider (discovery, token, keys, userinfo)


def init_app(app: Flask, svc: Services) -> None:
    settings = svc.settings
    if not settings.sso_enabled:
        return
    oauth = OAuth(app)
    oauth.register(
        "sso",
        client_id=settings.oidc_client_id,
        client_secret=settings.oidc_client_secret,
        server_metadata_url=f"{settings.oidc_issuer}/.well-known/openid-configuration",
        client_kwargs={
            "scope": settings.oidc_scopes,
            "code_challenge_method": "S256",
            "default_timeout": HTTP_TIMEOUT,
        },
    )
    app.extensions[EXTENSION] = oauth
    app.register_blueprint(bp)
    app.context_processor(lambda: {"sso_enabled": True})  # the login page's button


def _client():
    return current_app.extensions[EXTENSION].sso


@bp.post("/login/sso")
def start():
    """To the provider's login page, with a fresh state, nonce and PKCE verifier."""
    svc = current_services()
    session[NEXT] = local_path(request.args.get("next")) or ""
    try:
        return _client().authorize_redirect(svc.settings.public_url + CALLBACK)
    except (AuthlibBaseError, OSError, ValueError) as exc:  # discovery failed: provider down
        log.warning("single sign-on unavailable: %s", exc)
        return _refused(svc, "provider_unavailable", "The identity provider does not answer.")


@bp.get(CALLBACK)
def callback():
    svc = current_services()
    client = _client()
    try:
        token = client.authorize_access_token()
        claims = dict(token.get("userinfo") or {})
        if not claims:
            raise OAuthError(description="no ID token")
        claims = _with_userinfo(client, token, claims, svc)
    except (AuthlibBaseError, JoseError) as exc:  # state, the provider's error, the ID token
        said = getattr(exc, "description", None) or str(exc) or type(exc).__name__
        return _refused(svc, "oauth_error", f"Single sign-on failed: {said}.")
    except (OSError, ValueError) as exc:  # the provider's answers: network or JSON
        log.warning("single sign-on failed: %s", exc)
        return _refused(svc, "provider_unavailable", "The identity provider does not answer.")
    address = login_throttle.normal_address(request.remote_addr)
    try:
        with svc.db.write() as db:
            signed = sso_accounts.sign_in(
                db, svc.settings.oidc_issuer, claims, svc.settings, address
            )
    except sso_accounts.SsoRefused as exc:
        return _refused(svc, exc.reason, exc.message, exc.username, claims.get("sub"))
    next_path = session.get(NEXT) or ""
    session.clear()  # a new session: nothing from before the login carries over
    session["sid"] = secrets.token_urlsafe(16)
    session[SESSION_TOKEN] = signed.session_token
    login_user(Reviewer(signed.user_id, signed.username, signed.role, signed.email))
    return redirect(next_path or url_for("review.queue"))


def _with_userinfo(client, token: dict, claims: dict[str, Any], svc: Services) -> dict[str, Any]:
    """The ID token's claims, completed from the userinfo endpoint when the ID token lacks
    the username or groups claim (many providers put only `sub` in the ID token)."""
    wanted = (svc.settings.oidc_username_claim, svc.settings.oidc_groups_claim)
    metadata = client.load_server_metadata()
    if all(name in claims for name in wanted) or not metadata.get("userinfo_endpoint"):
        return claims
    info = client.userinfo(token=token)
    if info.get("sub") != claims.get("sub"):  # OpenID Connect Core 5.3.2
        raise OAuthError(description="the userinfo answer is about someone else")
    return {**info, **claims}  # the signed ID token wins where both say something


def _refused(
    svc: Services, reason: str, message: str, username: str = "", subject: Any = None
) -> tuple[str, int]:
    address = login_throttle.normal_address(request.remote_addr)
    with svc.db.write() as db:
        record_event(
            db,
            actor_kind="user" if username else "system",
            actor_id=username or "sso",
            event_type="login.sso_refused",
            payload={
                "reason": reason,
                "username": username,
                "subject": str(subject)[:255] if subject else None,
                "address": address,
            },
        )
    session.pop(NEXT, None)
    flash(message, "error")
    page = render_template("login.html", form=LoginForm(), next_path=None)
    return page, {"oauth_error": 400, "provider_unavailable": 502}.get(reason, 403)
