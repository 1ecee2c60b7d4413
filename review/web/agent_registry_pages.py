"""The agent registry's administration: admins register agents, change their settings,
rotate their signing secrets and deactivate them. Routes of the `agents` blueprint
(review/web/agent_pages.py); every change goes through the domain, which audits it.
"""

from __future__ import annotations

from flask import Response, abort, flash, make_response, redirect, render_template, request, url_for
from flask_login import current_user

from review.agents import killswitch
from review.agents.registry import create_agent, rotate_secret, update_agent
from review.errors import DomainError
from review.models import Agent, User
from review.services import current_services
from review.web.agent_pages import bp, load_agent
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
    svc = current_services()
    with svc.db.read() as db:
        users = db.query(User.username).filter(User.is_active).order_by(User.username).all()
    return render_template("agents/new.html", users=[u for (u,) in users], form={}, chosen=[])


@bp.post("")
@roles_required("admin")
def create():
    svc = current_services()
    form = request.form
    owners = form.getlist("owners")
    try:
        with svc.db.write() as db:
            created = create_agent(
                db,
                svc.box,
                form.get("slug", "").strip(),
                owners,
                name=form.get("name", "").strip() or None,
                callback_url=form.get("callback_url", "").strip() or None,
                trace_url_template=form.get("trace_url_template"),
                allow_private_callbacks=svc.settings.allow_private_callbacks,
                actor=("user", current_user.username),
            )
    except DomainError as exc:
        flash(str(exc), "error")
        with svc.db.read() as db:
            users = db.query(User.username).filter(User.is_active).order_by(User.username).all()
        return (
            render_template(
                "agents/new.html", users=[u for (u,) in users], form=form, chosen=owners
            ),
            422,
        )
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
    svc = current_services()
    form = request.form
    try:
        with svc.db.write() as db:
            agent = load_agent(db, slug)
            changes = update_agent(
                db,
                agent,
                name=form.get("name", ""),
                owners=form.getlist("owners"),
                callback_url=form.get("callback_url"),
                trace_url_template=form.get("trace_url_template"),
                breaker_flood=form.get("breaker_flood", "").strip() or None,
                breaker_rejections=_optional_int(form.get("breaker_rejections")),
                allow_private_callbacks=svc.settings.allow_private_callbacks,
                actor=("user", current_user.username),
            )
    except DomainError as exc:
        flash(str(exc), "error")
    else:
        svc.secrets.forget(slug)  # the breaker override travels with the cached signer
        flash(f"Saved: {', '.join(changes) or 'nothing changed'}.", "ok")
    return redirect(url_for("agents.detail", slug=slug))


@bp.post("/<slug>/rotate")
@roles_required("admin")
def rotate(slug: str):
    svc = current_services()
    with svc.db.write() as db:
        agent = load_agent(db, slug)
        if agent.deactivated_at is not None:
            abort(409)
        secret = rotate_secret(
            db, svc.box, agent, svc.settings.secret_overlap, ("user", current_user.username)
        )
    svc.secrets.forget(slug)
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
        svc.secrets.forget(slug)
        if flip.changed:
            flash(f"{slug} deactivated: its secrets no longer work.", "ok")
        else:
            flash(f"Nothing changed: {slug} was already deactivated.", "error")
    return redirect(url_for("agents.detail", slug=slug))
