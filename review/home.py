"""The home page: what is running, and what is waiting for a decision."""

from __future__ import annotations

from flask import Blueprint, render_template, request
from flask_login import current_user
from sqlalchemy import func, select

from review import listing
from review.health import check
from review.models import Agent
from review.runtime import current_runtime

bp = Blueprint("home", __name__)
SHOWN = 25


@bp.get("/")
def index():
    """What is running, for anyone (nothing confidential); what waits, for people logged in."""
    rt = current_runtime()
    refresh = request.headers.get("HX-Request") == "true"
    if not current_user.is_authenticated:
        if refresh:
            return ("", 204)
        return render_template(
            "home.html",
            checks=check(),
            database=rt.db.engine.dialect.name,
            redis=rt.redis.describe(),
            demo=rt.settings.demo,
            waiting=None,
            agents=None,
        )
    # The queue's own bounded reads: top rows by rank, capped counts shared via Redis.
    with rt.db.read() as session:
        waiting = listing.queue_rows(session, listing.QueueFilter(), limit=SHOWN)
        counts = listing.cached_level_counts(session, rt.redis.client())
        agents = None if refresh else session.scalar(select(func.count()).select_from(Agent))
    if refresh:  # the partial shows no health: no need to check it every 5 s
        return render_template(
            "_waiting.html", waiting=waiting, counts=counts, cap=listing.COUNT_CAP
        )
    return render_template(
        "home.html",
        checks=check(),
        database=rt.db.engine.dialect.name,
        redis=rt.redis.describe(),
        demo=rt.settings.demo,
        waiting=waiting,
        counts=counts,
        cap=listing.COUNT_CAP,
        agents=agents,
    )
