"""The home page: what is running, and what is waiting for a decision."""

from __future__ import annotations

from flask import Blueprint, render_template, request
from flask_login import current_user
from sqlalchemy import func, select

from review.health import check
from review.models import Agent, Deferral
from review.runtime import current_runtime

bp = Blueprint("home", __name__)
SHOWN = 25


@bp.get("/")
def index():
    """What is running, for anyone (nothing confidential); what waits, for people logged in."""
    rt = current_runtime()
    if not current_user.is_authenticated:
        if request.headers.get("HX-Request"):
            return ("", 204)
        return render_template(
            "home.html",
            checks=check(),
            database=rt.db.engine.dialect.name,
            redis=rt.redis.describe(),
            demo=rt.settings.demo,
            waiting=None,
            counts={},
            agents=None,
        )
    with rt.db.read() as session:
        waiting = session.scalars(
            select(Deferral)
            .where(Deferral.status == "pending")
            .order_by(Deferral.rank.desc())
            .limit(SHOWN)
        ).all()
        counts = dict(
            session.execute(
                select(Deferral.risk_level, func.count())
                .where(Deferral.status == "pending")
                .group_by(Deferral.risk_level)
            ).all()
        )
        agents = session.scalar(select(func.count()).select_from(Agent))
    template = "_waiting.html" if request.headers.get("HX-Request") else "home.html"
    return render_template(
        template,
        checks=check(),
        database=rt.db.engine.dialect.name,
        redis=rt.redis.describe(),
        demo=rt.settings.demo,
        waiting=waiting,
        counts=counts,
        agents=agents,
    )
