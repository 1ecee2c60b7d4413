"""People: login and logout, roles, CSRF, login throttling, and the browser's safety headers.

Sessions are Flask's signed cookies (HttpOnly, SameSite=Lax, Secure when
COUNTERSIGN_SESSION_COOKIE_SECURE=1, with HSTS then). Logging in clears whatever the
session held and starts a new one holding the user's session token; a session is
honoured only while that token is the user's current one, so logging out, a password
change or disabling the user ends it everywhere (review/users.py). Failed logins are
throttled as review/login_throttle.py explains; every failure and every throttled
attempt is audited. `next` after a login is only ever a path on this site.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import unicodedata
from dataclasses import dataclass
from functools import wraps
from typing import Any
from urllib.parse import unquote, urlsplit

from flask import (
    Blueprint,
    Flask,
    abort,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import LoginManager, current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from werkzeug.urls import iri_to_uri
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from review import login_throttle
from review.audit.chain import record_event
from review.db import Database
from review.models import User
from review.services import Services, current_services
from review.users import check_password, log_out, record_login
from review.web.signed_cookies import PagesOnlySessions, RememberingCSRF, agents_request

log = logging.getLogger(__name__)
bp = Blueprint("auth", __name__)
login_manager = LoginManager()
csrf = RememberingCSRF()  # flask-wtf's, each token's signature checked once a process
DECIDERS = ("admin", "reviewer")
SESSION_TOKEN = "user_token"  # noqa: S105  (the session key holding users.session_token)
HSTS = "max-age=31536000; includeSubDomains"


def content_security_policy(sso_origin: str = "") -> str:
    """The pages' CSP. With single sign-on, forms may also lead to the identity provider:
    the **Log in with SSO** form's answer redirects there, and browsers hold a form's
    redirects to form-action too."""
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",
            f"form-action 'self'{' ' + sso_origin if sso_origin else ''}",
            "base-uri 'none'",
            "object-src 'none'",
            "frame-ancestors 'none'",
        ]
    )


CSP = content_security_policy()


@dataclass(frozen=True)
class Reviewer:
    """The logged-in person, as flask-login sees them."""

    id: int
    username: str
    role: str
    email: str | None
    keyboard_shortcuts: bool = True  # single-key shortcuts on the reviewer pages
    is_authenticated: bool = True
    is_active: bool = True
    is_anonymous: bool = False

    def get_id(self) -> str:
        return str(self.id)

    @property
    def can_decide(self) -> bool:
        return self.role in DECIDERS

    @property
    def identities(self) -> set[str]:
        """Who this person is as a principal: a deferral made on their behalf is theirs."""
        return {i.lower() for i in (self.username, self.email) if i}


@login_manager.user_loader
def load_user(user_id: str) -> Reviewer | None:
    """The session's user, while the session holds their current token and they are active."""
    token = session.get(SESSION_TOKEN)
    if not user_id.isdigit() or not isinstance(token, str) or not token:
        return None
    user = session_user(current_services().db, int(user_id))
    if user is None:
        return None
    uid, username, role, email, keyboard_shortcuts, is_active, session_token = user
    if not is_active or not session_token:
        return None
    if not hmac.compare_digest(session_token.encode(), token.encode()):
        return None  # ended: logged out, new password, or disabled since
    return Reviewer(uid, username, role, email, bool(keyboard_shortcuts))


# Read on every request, so it stays honest (a user disabled, logged out or given another
# role counts from their next request): the seven columns it needs, one statement on the
# driver. Through SQLAlchemy's Core (its connection, execution context, result and the
# connection's begin and rollback bookkeeping) the read was two thirds of the loader's CPU
# and the loader a fifth of what a reviewer's request pays around its view
# (bench/request_overhead.py). One statement is its own snapshot: no transaction needed.
_SESSION_USER = (
    "SELECT id, username, role, email, keyboard_shortcuts, is_active, session_token"
    " FROM users WHERE id = {}"
)
_SESSION_USER_SQLITE = _SESSION_USER.format(":user_id")  # sqlite3's named style
_SESSION_USER_PG = _SESSION_USER.format("%(user_id)s")  # psycopg's


def session_user(db: Database, user_id: int) -> tuple | None:
    """The user's row for the session check: (id, username, role, email,
    keyboard_shortcuts, is_active, session_token), or None."""
    params = {"user_id": user_id}
    if not db.is_sqlite:  # without the pool's ping; a dropped connection: once more, pinged
        return db.call_unpinged(_SESSION_USER_PG, params)
    fairy = db.engine.raw_connection()  # autocommit (review/db.py): no BEGIN for a read
    try:
        return db.execute_on_driver(fairy.driver_connection, _SESSION_USER_SQLITE, params)
    finally:
        fairy.close()


def roles_required(*roles: str):
    """Only these roles may use the view (403 for the others)."""

    def decorator(view):
        @wraps(view)
        @login_required
        def wrapped(*args: Any, **kwargs: Any):
            if current_user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return wrapped

    return decorator


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


def _audit_login(
    svc: Services,
    event_type: str,
    username: str,
    address: str,
    *,
    user_id: int | None = None,
    **more: Any,
) -> None:
    """The login's audit event; a successful one also stamps the user's last login."""
    with svc.db.write() as db:
        if user_id is not None:
            record_login(db, user_id)
        record_event(
            db,
            actor_kind="user",
            actor_id=username[:200],
            event_type=event_type,
            payload={"username": username[:200], "address": address, **more},
        )


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("review.queue"))
    svc = current_services()
    form = LoginForm()
    next_path = local_path(request.args.get("next"))
    status = 200
    if form.validate_on_submit():
        username = form.username.data.strip()
        address = login_throttle.normal_address(request.remote_addr)
        refused = login_throttle.refusal(svc, username, address)
        if refused is not None:
            if login_throttle.first_refusal_in_window(svc, username, address):  # noted once
                _audit_login(svc, "login.throttled", username, address, limit=refused.reason)
            flash(refused.message, "error")
            page = render_template("login.html", form=form, next_path=next_path)
            return page, 429, {"Retry-After": str(refused.retry_after)}
        with svc.db.read() as db:
            user = db.scalar(select(User).where(User.username == username))
            ok = user is not None and user.is_active and check_password(user, form.password.data)
            token = user.session_token if ok else ""
        if ok and token:
            session.clear()  # a new session: nothing from before the login carries over
            session["sid"] = secrets.token_urlsafe(16)
            session[SESSION_TOKEN] = token
            login_user(
                Reviewer(user.id, user.username, user.role, user.email, user.keyboard_shortcuts)
            )
            login_throttle.forget_failures(svc, username, address)
            _audit_login(svc, "login.succeeded", username, address, user_id=user.id)
            return redirect(next_path or url_for("review.queue"))
        login_throttle.count_failure(svc, username, address)
        _audit_login(svc, "login.failed", username, address)
        flash("Wrong username or password.", "error")
        status = 401
    elif request.method == "POST":
        status = 400
    return render_template("login.html", form=form, next_path=next_path), status


def local_path(target: str | None) -> str | None:
    """`target` if it is a path on this site (as an ASCII URI), else None.

    A single leading `/`, no scheme or host, no backslash, no whitespace or control
    character anywhere (browsers drop tabs and newlines, so `/%09/evil.example`, once
    decoded, would leave the site), and the same again once percent-decoded.
    """
    if not target or len(target) > 2000:
        return None
    for candidate in (target, unquote(target)):
        if not _plainly_local(candidate):
            return None
    return iri_to_uri(target)


def _plainly_local(path: str) -> bool:
    if not path.startswith("/") or path.startswith(("//", "/\\")) or "\\" in path:
        return False
    if any(ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf") for ch in path):
        return False
    parts = urlsplit(path)
    return not parts.scheme and not parts.netloc


@bp.post("/logout")
@login_required
def logout():
    """Log out everywhere: the user's session token is replaced, so copies of it end too."""
    svc = current_services()
    with svc.db.write() as db:
        log_out(db, current_user.id)
    logout_user()
    session.clear()
    return redirect(url_for("auth.login"))


def _remember_cookie_unless_agents(response):
    if agents_request():
        return response
    return login_manager._update_remember_cookie(response)


def init_app(app: Flask, svc: Services) -> None:
    app.session_interface = PagesOnlySessions()
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=svc.settings.session_cookie_secure,
        SESSION_COOKIE_NAME="countersign_session",
        WTF_CSRF_TIME_LIMIT=None,  # valid for the session's life; the session expires instead
    )
    login_manager.init_app(app)
    # flask-login refreshes or clears its remember cookie after every request; an
    # agent's session is never saved, so there is nothing to do for theirs.
    hooks = app.after_request_funcs[None]
    hooks[hooks.index(login_manager._update_remember_cookie)] = _remember_cookie_unless_agents
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Log in to review deferrals."
    login_manager.session_protection = "basic"
    csrf.init_app(app)
    app.register_blueprint(bp)

    issuer = urlsplit(svc.settings.oidc_issuer) if svc.settings.sso_enabled else None
    csp = content_security_policy(f"{issuer.scheme}://{issuer.netloc}" if issuer else "")

    safety = [
        ("Content-Security-Policy", csp),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "same-origin"),
    ]
    if svc.settings.session_cookie_secure:  # served over https: browsers keep to it
        safety.append(("Strict-Transport-Security", HSTS))
    safety = [(name.lower(), value) for name, value in safety]  # names are case-blind

    @app.after_request
    def safety_headers(response):
        # Each unless the view set its own. One look at the names the response has, not
        # a setdefault each: four setdefaults were a tenth of a status read's CPU.
        present = {name.lower() for name, _value in response.headers}
        for name, value in safety:
            if name not in present:
                response.headers.add(name, value)
        return response
