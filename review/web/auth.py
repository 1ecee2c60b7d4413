"""People: login and logout, roles, CSRF, login throttling, and the browser's safety headers.

Sessions are Flask's signed cookies (HttpOnly, SameSite=Lax, Secure when
COUNTERSIGN_SESSION_COOKIE_SECURE=1). Logging in clears whatever the session held and
starts a new one with a fresh id. Failed logins are counted in Redis per account and
per address over 15 minutes; past the limit the login page answers 429. Every failure
and every throttled attempt is audited.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from functools import wraps
from typing import Any

import redis
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
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import select
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from review import redis_keys
from review.audit.chain import record_event
from review.models import User
from review.services import Services, current_services
from review.users import check_password

log = logging.getLogger(__name__)
bp = Blueprint("auth", __name__)
login_manager = LoginManager()
csrf = CSRFProtect()
THROTTLE_WINDOW = 15 * 60
DECIDERS = ("admin", "reviewer")

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "object-src 'none'",
        "frame-ancestors 'none'",
    ]
)


@dataclass(frozen=True)
class Reviewer:
    """The logged-in person, as flask-login sees them."""

    id: int
    username: str
    role: str
    email: str | None
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
    if not user_id.isdigit():
        return None
    svc = current_services()
    with svc.db.read() as db:
        user = db.get(User, int(user_id))
        if user is None or not user.is_active:
            return None
        return Reviewer(user.id, user.username, user.role, user.email)


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


def _throttle_keys(username: str, address: str) -> list[tuple[str, str]]:
    return [
        (redis_keys.login_failures_for_account(username), "login_failures_per_account"),
        (redis_keys.login_failures_from_address(address), "login_failures_per_address"),
    ]


def _throttled(svc: Services, username: str, address: str) -> bool:
    try:
        client = svc.redis.client()
        for key, limit in _throttle_keys(username, address):
            if int(client.get(key) or 0) >= getattr(svc.settings, limit):
                return True
    except redis.RedisError as exc:  # fail open: the password check still protects
        log.warning("login throttle unavailable: %s", exc)
    return False


def _count_failure(svc: Services, username: str, address: str) -> None:
    try:
        pipe = svc.redis.client().pipeline(transaction=False)
        for key, _limit in _throttle_keys(username, address):
            pipe.incr(key)
            pipe.expire(key, THROTTLE_WINDOW, nx=True)
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("login failure not counted: %s", exc)


def _first_refusal_in_window(svc: Services, username: str, address: str) -> bool:
    key = redis_keys.login_throttle_noted(username, address)
    try:
        return bool(svc.redis.client().set(key, "1", nx=True, ex=THROTTLE_WINDOW))
    except redis.RedisError:
        return True


def _audit_login(svc: Services, event_type: str, username: str, address: str) -> None:
    with svc.db.write() as db:
        record_event(
            db,
            actor_kind="user",
            actor_id=username[:200],
            event_type=event_type,
            payload={"username": username[:200], "address": address},
        )


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("review.queue"))
    svc = current_services()
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        username, address = form.username.data.strip(), request.remote_addr or "unknown"
        if _throttled(svc, username, address):
            if _first_refusal_in_window(svc, username, address):  # a flood is noted once
                _audit_login(svc, "login.throttled", username, address)
            flash("Too many failed logins. Wait a few minutes and try again.", "error")
            return render_template("login.html", form=form), 429
        with svc.db.read() as db:
            user = db.scalar(select(User).where(User.username == username))
            ok = user is not None and user.is_active and check_password(user, form.password.data)
        if ok:
            session.clear()  # a new session: nothing from before the login carries over
            session["sid"] = secrets.token_urlsafe(16)
            login_user(Reviewer(user.id, user.username, user.role, user.email))
            _audit_login(svc, "login.succeeded", username, address)
            return redirect(_safe_next(request.args.get("next")))
        _count_failure(svc, username, address)
        _audit_login(svc, "login.failed", username, address)
        flash("Wrong username or password.", "error")
        status = 401
    elif request.method == "POST":
        status = 400
    return render_template("login.html", form=form), status


def _safe_next(target: str | None) -> str:
    """Only local paths: a login link must not send people elsewhere."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("review.queue")


@bp.post("/logout")
@login_required
def logout():
    logout_user()
    session.clear()
    return redirect(url_for("auth.login"))


def init_app(app: Flask, svc: Services) -> None:
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=svc.settings.session_cookie_secure,
        SESSION_COOKIE_NAME="countersign_session",
        WTF_CSRF_TIME_LIMIT=None,  # valid for the session's life; the session expires instead
    )
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Log in to review deferrals."
    login_manager.session_protection = "basic"
    csrf.init_app(app)
    app.register_blueprint(bp)

    @app.after_request
    def safety_headers(response):
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response
