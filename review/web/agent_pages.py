"""The agent pages: the registry, each agent's record and kill switch, its deliveries.

Everyone logged in reads `/agents` and `/agents/<slug>`. An agent's owners and the
admins flip its kill switch and redeliver its callbacks; admins alone register agents,
change their settings, rotate secrets, deactivate them, and stop or revive all at once.
Auditors read deliveries too. Every change goes through the domain, which audits it.
"""

from __future__ import annotations

import hashlib

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required

from review.agents import killswitch, overview
from review.agents.registry import (
    create_agent,
    find_agent,
    may_operate,
    rotate_secret,
    update_agent,
    validate_trace_template,
)
from review.callbacks import deliveries
from review.callbacks.deliveries import NotDead
from review.errors import DomainError
from review.models import Agent, User
from review.services import current_services
from review.web.auth import roles_required

bp = Blueprint("agents", __name__, url_prefix="/agents")
STATUS_FILTERS = {"all": None, "waiting": "pending", "dead": "dead", "delivered": "delivered"}


def is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


def _load(db, slug: str) -> Agent:
    agent = find_agent(db, slug)
    if agent is None:
        abort(404)
    return agent


def _secret_page(agent: Agent, secret: str, heading: str) -> Response:
    """The one time a secret is shown: never cached, never shown again."""
    response = make_response(
        render_template("agents/secret.html", agent=agent, secret=secret, heading=heading)
    )
    response.headers["Cache-Control"] = "no-store"
    return response


# --- the registry ------------------------------------------------------------------------


@bp.get("")
@login_required
def index():
    svc = current_services()
    with svc.db.read() as db:
        rows = overview.agent_rows(db)
    fingerprint = switch_fingerprint([r.agent for r in rows])
    return render_template("agents/list.html", rows=rows, fingerprint=fingerprint)


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
        template = validate_trace_template(form.get("trace_url_template"))
        with svc.db.write() as db:
            created = create_agent(
                db,
                svc.box,
                form.get("slug", "").strip(),
                owners,
                name=form.get("name", "").strip() or None,
                callback_url=form.get("callback_url", "").strip() or None,
                allow_private_callbacks=svc.settings.allow_private_callbacks,
                actor=("user", current_user.username),
            )
            created.agent.trace_url_template = template
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


@bp.get("/<slug>")
@login_required
def detail(slug: str):
    return render_template("agents/detail.html", **_detail_context(slug))


def _detail_context(slug: str, **extra) -> dict:
    svc = current_services()
    with svc.db.read() as db:
        agent = _load(db, slug)
        record = overview.agent_detail(db, agent)
        operate = may_operate(db, agent, current_user.id, current_user.role)
        users = []
        if current_user.role == "admin":
            users = [u for (u,) in db.query(User.username).order_by(User.username).all()]
    return {
        "d": record,
        "agent": record.agent,
        "operate": operate,
        "users": users,
        "settings": svc.settings,
        "duration": overview.duration,
        "fingerprint": switch_fingerprint([record.agent]),
        **extra,
    }


# --- keeping the pages current ------------------------------------------------------------


def switch_fingerprint(agents: list[Agent]) -> str:
    """Changes whenever any of these agents' switch flips (by a person or a breaker)."""
    text = "|".join(f"{a.slug}:{a.state}:{a.state_changed_at.isoformat()}" for a in agents)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _refresh_if_changed(current: str) -> Response:
    """204 while nothing changed; otherwise ask htmx to reload the page (HX-Refresh)."""
    if request.args.get("since") == current:
        return Response(status=204)
    return Response(status=200, headers={"HX-Refresh": "true"})


@bp.get("/state")
@login_required
def list_state():
    """Polled by /agents every few seconds: a flip anywhere reloads the list."""
    svc = current_services()
    with svc.db.read() as db:
        agents = db.query(Agent).order_by(Agent.slug).all()
    return _refresh_if_changed(switch_fingerprint(agents))


@bp.get("/<slug>/state")
@login_required
def detail_state(slug: str):
    """Polled by the agent's page: a flip (a breaker's too) reloads it at once."""
    svc = current_services()
    with svc.db.read() as db:
        agent = _load(db, slug)
    return _refresh_if_changed(switch_fingerprint([agent]))


# --- the kill switch -----------------------------------------------------------------


@bp.get("/<slug>/switch")
@login_required
def switch_form(slug: str):
    """The confirmation step: the Kill switch / Revive buttons open this form."""
    action = request.args.get("action", "kill")
    if action not in ("kill", "revive"):
        abort(404)
    svc = current_services()
    with svc.db.read() as db:
        agent = _load(db, slug)
        if not may_operate(db, agent, current_user.id, current_user.role):
            abort(403)
    template = "agents/_switch_form.html" if is_htmx() else "agents/switch_page.html"
    return render_template(template, agent=agent, action=action)


def _flip(slug: str, action: str):
    svc = current_services()
    reason = request.form.get("reason", "")
    try:
        actor = killswitch.authorise(svc, slug, current_user.username, action)
    except killswitch.NotAllowed:
        abort(403)
    except DomainError:
        abort(404)
    try:
        flip = (killswitch.kill if action == "kill" else killswitch.revive)(
            svc, slug, actor, reason
        )
    except DomainError as exc:
        message, kind = str(exc), "error"
    else:
        if not flip.changed:
            state = "killed" if action == "kill" else "active"
            message, kind = f"Nothing changed: {slug} was already {state}.", "error"
        elif action == "kill":
            message = f"{slug} stopped: intake refuses it, {flip.ended} undecided ended."
            kind = "ok"
        else:
            message, kind = f"{slug} revived: it may defer again.", "ok"
    if is_htmx():  # the whole record changed (state, undecided, history): swap it all
        return render_template(
            "agents/_detail_body.html", **_detail_context(slug, message=message, kind=kind)
        )
    flash(message, kind)
    return redirect(url_for("agents.detail", slug=slug))


@bp.post("/<slug>/kill")
@login_required
def kill(slug: str):
    return _flip(slug, "kill")


@bp.post("/<slug>/revive")
@login_required
def revive(slug: str):
    return _flip(slug, "revive")


@bp.post("/stop-all")
@roles_required("admin")
def stop_all():
    svc = current_services()
    actor = killswitch.Actor("user", current_user.username)
    try:
        flips = killswitch.stop_all(svc, actor, request.form.get("reason", ""))
    except DomainError as exc:
        flash(str(exc), "error")
    else:
        stopped = [f for f in flips if f.changed]
        flash(
            f"Stopped {len(stopped)} agent{'s' if len(stopped) != 1 else ''}; "
            f"{sum(f.ended for f in stopped)} undecided deferrals ended.",
            "ok",
        )
    return redirect(url_for("agents.index"))


@bp.post("/revive-all")
@roles_required("admin")
def revive_all():
    svc = current_services()
    actor = killswitch.Actor("user", current_user.username)
    try:
        flips = killswitch.revive_all(svc, actor, request.form.get("reason", ""))
    except DomainError as exc:
        flash(str(exc), "error")
    else:
        flash(f"Revived {len(flips)} agent{'s' if len(flips) != 1 else ''}.", "ok")
    return redirect(url_for("agents.index"))


# --- administration --------------------------------------------------------------------


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
            agent = _load(db, slug)
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
        agent = _load(db, slug)
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


# --- deliveries --------------------------------------------------------------------------


def _agent_for_deliveries(db, slug: str) -> tuple[Agent, bool]:
    """The agent and whether the person may operate it; 403 for reviewers who do not own it."""
    agent = _load(db, slug)
    operate = may_operate(db, agent, current_user.id, current_user.role)
    if not operate and current_user.role != "auditor":
        abort(403)
    return agent, operate


@bp.get("/<slug>/deliveries")
@login_required
def deliveries_page(slug: str):
    shown = request.args.get("status", "all")
    if shown not in STATUS_FILTERS:
        shown = "all"
    svc = current_services()
    with svc.db.read() as db:
        agent, operate = _agent_for_deliveries(db, slug)
        rows = deliveries.for_agent(db, agent.id, status=STATUS_FILTERS[shown])
        health = deliveries.health(db, agent.id)
    return render_template(
        "agents/deliveries.html",
        agent=agent,
        rows=rows,
        health=health,
        shown=shown,
        filters=STATUS_FILTERS,
        operate=operate,
    )


@bp.post("/<slug>/deliveries/<event_id>/redeliver")
@login_required
def redeliver(slug: str, event_id: str):
    svc = current_services()
    with svc.db.read() as db:
        agent, operate = _agent_for_deliveries(db, slug)
    if not operate:
        abort(403)
    try:
        deliveries.redeliver(svc, event_id, agent, current_user.username)
        flash(f"Redelivering {event_id}: one more attempt, now.", "ok")
    except NotDead:
        flash(f"Nothing changed: {event_id} is not a dead letter (any more).", "error")
    return redirect(url_for("agents.deliveries_page", slug=slug, status="all"))
