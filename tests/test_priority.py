"""Priority: risk first, then age and nearness of expiry; read from an index, never recomputed."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text

from review.intake import priority
from review.models import Deferral
from tests.helpers import refund

KW = dict(default_expires_in=86400, age_seconds_per_point=600, expiry_seconds_per_point=3600)
T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def _priority_at(at, score, created, expires):
    r = priority.rank(score, created, expires, **KW)
    return priority.priority_at(at, r, age_seconds_per_point=600, expiry_seconds_per_point=3600)


def test_at_intake_with_the_default_expiry_priority_equals_the_score():
    assert round(_priority_at(T0, 82, T0, T0 + timedelta(days=1))) == 82


def test_waiting_adds_a_point_every_ten_minutes_plus_the_approaching_expiry():
    later = T0 + timedelta(hours=1)
    assert round(_priority_at(later, 40, T0, T0 + timedelta(days=1)), 3) == 47.0


def test_a_short_expiry_pulls_a_deferral_forward():
    soon = _priority_at(T0, 40, T0, T0 + timedelta(hours=1))
    assert round(soon) == 40 + 23


def test_the_order_never_changes_as_time_passes():
    a = priority.rank(70, T0, T0 + timedelta(days=1), **KW)  # risky
    b = priority.rank(30, T0 - timedelta(hours=6), T0 + timedelta(hours=2), **KW)  # old, soon
    later = [_p(a), _p(b)]
    assert (a > b) == (later[0] > later[1])


def _p(rank_value, at=T0 + timedelta(days=3)):
    return priority.priority_at(
        at, rank_value, age_seconds_per_point=600, expiry_seconds_per_point=3600
    )


def test_the_queue_lists_pending_deferrals_by_priority(agent, svc):
    low = agent.defer(refund(action={"tool": "notes.add", "args": {}}, risk={"score": 0}))
    high = agent.defer(refund(labels={"env": "prod"}))
    soon = agent.defer(
        refund(action={"tool": "notes.add", "args": {}}, risk={"score": 0}, expires_in=60)
    )
    with svc.db.read() as session:
        order = session.scalars(
            select(Deferral.id).where(Deferral.status == "pending").order_by(Deferral.rank.desc())
        ).all()
    assert order == [high.get_json()["id"], soon.get_json()["id"], low.get_json()["id"]]


def test_the_top_n_pending_query_uses_the_index(agent, svc):
    query = "SELECT id FROM deferrals WHERE status = 'pending' ORDER BY rank DESC LIMIT 5"
    with svc.db.engine.connect() as conn:
        if svc.db.is_sqlite:
            plan = " ".join(str(r) for r in conn.execute(text("EXPLAIN QUERY PLAN " + query)))
            assert "ix_deferrals_status_rank" in plan and "TEMP B-TREE" not in plan.upper()
        else:
            conn.execute(text("SET enable_seqscan = off"))
            plan = " ".join(r[0] for r in conn.execute(text("EXPLAIN " + query)))
            assert "ix_deferrals_status_rank" in plan and "Sort" not in plan
