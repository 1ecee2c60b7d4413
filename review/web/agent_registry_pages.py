"""The agent registry's administration: admins register agents, change their settings,
rotate their signing secrets and deactivate them. Routes of the `agents` blueprint
(review/web/agent_pages.py); every change goes through the domain, which audits it.
"""

from __future__ import annotations

from flask import Response, abort, flash, make_response, redirect, render_template, request, url_for
from flask_login import current_user

from review.agents import administration, killswitch
from review.errors import DomainError, InvalidState, NotFound
from review.models import Agent
from review.services import current_services
from review.web.agent_pages import bp
from review.web.auth import roles_required


def _secret_page(agent: Agent, secret: str, heading: str) -> Response:
    """The one time a secret is shown: never cached, never shown again."""
    response = make_response(
        render_template("agents/secret.html", agent=agent, secret=secret, heading=heading)
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/new")
@roles_required("admin")
def new():
    users = administration.active_usernames(current_services())
    return render_template("agents/new.html", users=users, form={}, chosen=[])


@bp.post("")
@roles_required("admin")
def create():
    svc = current_services()
    form = request.form
    owners = form.getlist("owners")
    try:
        created = administration.register_agent(
            svc,
            form.get("slug", "").strip(),
            owners,
            name=form.get("name", "").strip() or None,
            callback_url=form.get("callback_url", "").strip() or None,
            trace_url_template=form.get("trace_url_template"),
            actor=("user", current_user.username),
        )
    except DomainError as exc:
        flash(str(exc), "error")
        users = administration.active_usernames(svc)
        return render_template("agents/new.html", users=users, form=form, chosen=owners), 422
    return _secret_page(created.agent, created.secret, f"Agent {created.agent.slug} registered")


def _optional_int(value: str | None) -> int | None:
    value = (value or "").strip()
    if not value:
        return None
    if not value.isdigit():
        raise DomainError("Rejections in a row: a whole number, or empty for the default.")
    return int(value)


@bp.post("/<slug>/settings")
@roles_required("admin")
def save_settings(slug: str):
    form = request.form
    try:
        changes = administration.change_agent(
            current_services(),
            slug,
            actor=("user", current_user.username),
            name=form.get("name", ""),
            owners=form.getlist("owners"),
            callback_url=form.get("callback_url"),
            trace_url_template=form.get("trace_url_template"),
            breaker_flood=form.get("breaker_flood", "").strip() or None,
            breaker_rejections=_optional_int(form.get("breaker_rejections")),
        )
    except NotFound:
        abort(404)
    except DomainError as exc:
        flash(str(exc), "error")
    else:
        flash(f"Saved: {', '.join(changes) or 'nothing changed'}.", "ok")
    return redirect(url_for("agents.detail", slug=slug))


@bp.post("/<slug>/rotate")
@roles_required("admin")
def rotate(slug: str):
    try:
        agent, secret = administration.rotate_agent_secret(
            current_services(), slug, ("user", current_user.username)
        )
    except NotFound:
        abort(404)
    except InvalidState:
        abort(409)
    return _secret_page(agent, secret, f"New secret for {slug}")


@bp.post("/<slug>/deactivate")
@roles_required("admin")
def deactivate(slug: str):
    svc = current_services()
    actor = killswitch.Actor("user", current_user.username)
    try:
        flip = killswitch.deactivate(svc, slug, actor, request.form.get("reason", ""))
    except DomainError as exc:
        flash(str(exc), "error")
    else:
        if flip.changed:
            flash(f"{slug} deactivated: its secrets no longer work.", "ok")
        else:
            flash(f"Nothing changed: {slug} was already deactivated.", "error")
    return redirect(url_for("agents.detail", slug=slug))
