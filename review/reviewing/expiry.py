"""Expiry: a deferral still undecided at `expires_at` ends as `expired`, a deny.

The worker's tick runs this every few seconds, so the agent hears within seconds (its
callback goes out through the outbox like any decision). A reviewer who tries to decide
an expired deferral first is told so by review.decisions.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from review.audit.chain import chained_write
from review.models import PENDING_STATUSES, Deferral, utcnow
from review.reviewing.ending import AlreadyDecided, expire
from review.services import Services

BATCH = 100


def expire_due(svc: Services, now: datetime | None = None) -> int:
    """End up to BATCH overdue deferrals as `expired`; return how many."""
    now = now or utcnow()
    with chained_write(svc.db) as session:
        due = session.scalars(
            select(Deferral)
            .where(Deferral.status.in_(PENDING_STATUSES), Deferral.expires_at <= now)
            .order_by(Deferral.expires_at)
            .limit(BATCH)
            .with_for_update(of=Deferral, skip_locked=True)  # not the joined agent row
        ).all()
        ended = 0
        for deferral in due:
            try:
                expire(session, deferral, now)
                ended += 1
            except AlreadyDecided:  # decided a moment ago: the decision stands
                continue
        return ended
