"""Admins' oversight of reviewing: canaries to seed and follow, and each reviewer's figures.

Thin views over review/canaries/ and review/reviewing/figures.py. Admins only: a reviewer
who could list the canaries would know which items in the queue are tests.
"""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from review.canaries.kinds import KINDS
from review.canaries.listing import recent_canaries
from review.canaries.seeding import MAX_COUNT, seed_canaries
from review.errors import DomainError
from review.models import Agent, utcnow
from review.notifications.figures import (
    time_to_decision_by_channel,
    time_to_decision_by_reviewer,
)
from review.reviewing.figures import WINDOWS, reviewer_figures
from review.services import current_services
from review.web.auth import roles_required

bp = Blueprint("oversight", __name__)
LISTED = 100


@bp.get("/canaries")
@roles_required("admin")
def canaries():
    with current_services().db.read() as session:
        rows = recent_canaries(session, LISTED)
        agents = session.scalars(
            select(Agent.slug)
            .where(Agent.state == "active", Agent.deactivated_at.is_(None))
            .order_by(Agent.slug)
        ).all()
    return render_template(
        "oversight/canaries.html", rows=rows, agents=agents, kinds=KINDS, max_count=MAX_COUNT
    )


@bp.post("/canaries")
@roles_required("admin")
def seed():
    form = request.form
    raw_count = form.get("count", "1").strip()
    if not raw_count.isdigit():
        flash("Count: give a whole number.", "error")
        return redirect(url_for("oversight.canaries"))
    try:
        seeded = seed_canaries(
            current_services(),
            ("user", current_user.username),
            agent_slug=form.get("agent") or None,
            count=int(raw_count),
            kind=form.get("kind") or None,
        )
    except DomainError as exc:
        flash(str(exc), "error")
        return redirect(url_for("oversight.canaries"))
    n = len(seeded)
    flash(f"Seeded {n} canar{'y' if n == 1 else 'ies'}: in the queue now.", "ok")
    return redirect(url_for("oversight.canaries"))


@bp.get("/reviewers")
@roles_required("admin")
def figures():
    now = utcnow()
    with current_services().db.read() as session:
        windows = {days: reviewer_figures(session, days, now) for days in WINDOWS}
        # Time from a notification to the decision: the team's per channel, and each
        # reviewer's (every reviewer in one query, not one per row).
        since = {days: now - timedelta(days=days) for days in WINDOWS}
        channels = {d: time_to_decision_by_channel(session, since=since[d]) for d in WINDOWS}
        by_reviewer = {d: time_to_decision_by_reviewer(session, since=since[d]) for d in WINDOWS}
    return render_template(
        "oversight/reviewers.html", windows=windows, channels=channels, by_reviewer=by_reviewer
    )
