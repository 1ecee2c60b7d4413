"""The agent pages: an agent's callback deliveries, with Redeliver for its dead letters.

Owners and admins operate an agent; auditors read; other reviewers see none of it.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from review import deliveries
from review.agents import find_agent, may_operate
from review.deliveries import NotDead
from review.models import Agent
from review.runtime import current_runtime

bp = Blueprint("agents", __name__, url_prefix="/agents")
STATUS_FILTERS = {"all": None, "waiting": "pending", "dead": "dead", "delivered": "delivered"}


def _agent_for_reading(db, slug: str) -> tuple[Agent, bool]:
    """The agent and whether the person may operate it; 404 or 403 otherwise."""
    agent = find_agent(db, slug)
    if agent is None:
        abort(404)
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
    rt = current_runtime()
    with rt.db.read() as db:
        agent, operate = _agent_for_reading(db, slug)
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
    rt = current_runtime()
    with rt.db.read() as db:
        agent, operate = _agent_for_reading(db, slug)
    if not operate:
        abort(403)
    try:
        deliveries.redeliver(rt, event_id, agent, current_user.username)
        flash(f"Redelivering {event_id}: one more attempt, now.", "ok")
    except NotDead:
        flash(f"Nothing changed: {event_id} is not a dead letter (any more).", "error")
    return redirect(url_for("agents.deliveries_page", slug=slug, status="all"))
