"""The home page: what is running, and what is waiting for a decision."""

from __future__ import annotations

from flask import Blueprint, render_template, request
from flask_login import current_user
from sqlalchemy import func, select

from review.models import Agent
from review.reviewing import queue_reads
from review.services import current_services
from review.web.health import check

bp = Blueprint("home", __name__)
SHOWN = 25


@bp.get("/")
def index():
    """What is running, for anyone (nothing confidential); what waits, for people logged in."""
    svc = current_services()
    refresh = request.headers.get("HX-Request") == "true"
    if not current_user.is_authenticated:
        if refresh:
            return ("", 204)
        return _home_page(svc, waiting=None, agents=None)
    # The queue's own bounded reads: top rows by rank, capped counts shared via Redis.
    with svc.db.read() as session:
        waiting = queue_reads.queue_rows(session, queue_reads.QueueFilter(), limit=SHOWN)
        counts = queue_reads.cached_level_counts(session, svc.redis.client())
        agents = None if refresh else session.scalar(select(func.count()).select_from(Agent))
    if refresh:  # the partial shows no health: no need to check it every 5 s
        return render_template(
            "_waiting.html", waiting=waiting, counts=counts, cap=queue_reads.COUNT_CAP
        )
    return _home_page(svc, waiting=waiting, counts=counts, cap=queue_reads.COUNT_CAP, agents=agents)


def _home_page(svc, **shown):
    """The whole page: the health of what runs, and what the caller may see of the queue."""
    return render_template(
        "home.html",
        checks=check(),
        database=svc.db.engine.dialect.name,
        redis=svc.redis.describe(),
        demo=svc.settings.demo,
        **shown,
    )
