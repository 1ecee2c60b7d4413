"""The users page (admins only): every user, and each one's role, state and password.

The same domain functions as the `users` commands (review/users.py), each change one
transaction with its audit event, the acting admin its actor. Disabling a user, a new
password and a new role end the user's sessions at their next request. An admin does
not disable or demote themselves here (the domain refuses), so a page that an admin
uses always leaves one admin.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from review import users
from review.errors import DomainError, NotFound
from review.models import ROLES
from review.services import current_services
from review.web.auth import roles_required

bp = Blueprint("people", __name__, url_prefix="/users")


def _actor() -> tuple[str, str]:
    return ("user", current_user.username)


@bp.get("")
@roles_required("admin")
def index():
    with current_services().db.read() as session:
        people = users.list_users(session)
        return render_template("people/index.html", people=people, roles=ROLES, form={})


@bp.post("")
@roles_required("admin")
def create():
    svc = current_services()
    form = request.form
    username = form.get("username", "").strip()
    try:
        with svc.db.write() as session:
            users.create_user(
                session,
                username,
                form.get("role", ""),
                form.get("password", ""),
                email=form.get("email", "").strip() or None,
                actor=_actor(),
            )
    except DomainError as exc:
        flash(str(exc), "error")
        with svc.db.read() as session:
            people = users.list_users(session)
            page = render_template("people/index.html", people=people, roles=ROLES, form=form)
        return page, 409 if exc.code == "conflict" else 422
    flash(f"Created {username}.", "ok")
    return redirect(url_for("people.detail", username=username))


@bp.get("/<username>")
@roles_required("admin")
def detail(username: str):
    with current_services().db.read() as session:
        user = users.find_user(session, username)
        if user is None:
            abort(404)
        return render_template("people/detail.html", user=user, roles=ROLES)


@bp.post("/<username>/disable")
@roles_required("admin")
def disable(username: str):
    return _change(
        username,
        lambda s: users.disable_user(s, username, actor=_actor()),
        f"Disabled {username}: their sessions have ended.",
        f"{username} was already disabled.",
    )


@bp.post("/<username>/enable")
@roles_required("admin")
def enable(username: str):
    return _change(
        username,
        lambda s: users.enable_user(s, username, actor=_actor()),
        f"Enabled {username}: they may log in again.",
        f"{username} was already enabled.",
    )


@bp.post("/<username>/role")
@roles_required("admin")
def set_role(username: str):
    role = request.form.get("role", "")
    return _change(
        username,
        lambda s: users.set_role(s, username, role, actor=_actor()),
        f"{username} is now {role}: their sessions have ended.",
        f"{username} was already {role}.",
    )


@bp.post("/<username>/password")
@roles_required("admin")
def set_password(username: str):
    password = request.form.get("password", "")

    def change(session) -> bool:
        users.set_password(session, username, password, actor=_actor())
        return True

    return _change(username, change, f"New password for {username}: their sessions have ended.")


def _change(username: str, change: Callable, done: str, unchanged: str = "") -> object:
    """One change in its own transaction; the domain's refusal is shown, never a 500."""
    try:
        with current_services().db.write() as session:
            changed = change(session)
    except NotFound:
        abort(404)
    except DomainError as exc:
        flash(str(exc), "error")
    else:
        flash(done if changed else unchanged, "ok" if changed else "error")
    return redirect(url_for("people.detail", username=username))
