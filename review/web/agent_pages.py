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
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required

from review.agents import killswitch, overview, pacts
from review.agents.registry import (
    find_agent,
    may_operate,
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


def load_agent(db, slug: str) -> Agent:
    agent = find_agent(db, slug)
    if agent is None:
        abort(404)
    return agent


# --- the registry ------------------------------------------------------------------------


@bp.get("")
@login_required
def index():
    svc = current_services()
    with svc.db.read() as db:
        rows = overview.agent_rows(db)
    fingerprint = switch_fingerprint([r.agent for r in rows])
    return render_template("agents/list.html", rows=rows, fingerprint=fingerprint)


@bp.get("/<slug>")
@login_required
def detail(slug: str):
    return render_template("agents/detail.html", **_detail_context(slug))


def _detail_context(slug: str, **extra) -> dict:
    svc = current_services()
    with svc.db.read() as db:
        agent = load_agent(db, slug)
        record = overview.agent_detail(db, agent)
        behaviour = pacts.behaviour(db, agent.id)
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
        "pact": pacts.pact_of(svc.policy, agent.slug),  # its pact beside its owners
        "behaviour": behaviour,
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
        agent = load_agent(db, slug)
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
        agent = load_agent(db, slug)
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


# --- deliveries --------------------------------------------------------------------------


def _agent_for_deliveries(db, slug: str) -> tuple[Agent, bool]:
    """The agent and whether the person may operate it; 403 for reviewers who do not own it."""
    agent = load_agent(db, slug)
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
