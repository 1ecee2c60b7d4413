"""Lapsed claims: a claim whose lease ran out goes back to the queue.

A lease lapses after COUNTERSIGN_LEASE_SECONDS without activity (review/reviewing/claims.py).
Lapsed claims are returned before each claim (Start batch: inside its own transaction,
review/reviewing/claims.py `claim_batch`; a single claim: `return_lapsed_first`) and by
the worker's maintenance tick (queue/maintenance.py), each with its audit event as the
system's doing.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from review.audit.chain import chained_write, record_events
from review.models import Agent, Deferral, PendingDecision
from review.reviewing.live import note_changed
from review.services import Services


def return_lapsed_claims(session: Session, now: datetime) -> int:
    """Claims whose lease ran out go back to the queue (audited as the system's doing).

    Not a claim with a decision held for its undo window (review/reviewing/undo.py): that
    decision takes effect on the claim, lease or not, so a closed tab does not lose it."""
    table = Deferral.__table__
    lapsed = session.execute(
        select(table.c.id, table.c.claimed_by, table.c.agent_id)
        .where(*lapsed_where(table, now))
        .with_for_update(of=table, skip_locked=True)
    ).all()
    if not lapsed:
        return 0
    session.execute(
        update(table)
        .where(table.c.id.in_([r.id for r in lapsed]), table.c.status == "in_review")
        .values(status="pending", claimed_by=None, claimed_at=None, lease_expires_at=None)
    )
    note_changed(session, *[r.id for r in lapsed])
    slugs = agent_slugs(session, {r.agent_id for r in lapsed})
    record_events(
        session,
        [
            {
                "actor_kind": "system",
                "actor_id": "lease",
                "event_type": "deferral.lease_lapsed",
                "agent": slugs[r.agent_id],
                "deferral_id": r.id,
                "payload": {"claimed_by_user_id": r.claimed_by},
                "at": now,
            }
            for r in lapsed
        ],
    )
    return len(lapsed)


def lapsed_where(table, now: datetime):
    """The conditions of a lapsed claim (also read by claims.claim_batch's first read)."""
    held = PendingDecision.__table__
    return (
        table.c.status == "in_review",
        table.c.lease_expires_at < now,
        ~exists().where(held.c.deferral_id == table.c.id),
    )


def return_lapsed_first(svc: Services, now: datetime) -> None:
    """Before a single claim: lapsed claims go back to the queue in a write of their own,
    and only when a read (outside the writer lock; on PostgreSQL one statement without a
    transaction) finds one. A lease that lapses between the two is returned by the next
    claim."""
    table = Deferral.__table__
    search = select(table.c.id).where(*lapsed_where(table, now)).limit(1)
    found = svc.db.read_unpinged(lambda session: session.execute(search).first())
    if found is not None:
        with chained_write(svc.db) as session:
            return_lapsed_claims(session, now)


def agent_slugs(session: Session, ids: set[int]) -> dict[int, str]:
    """Each agent's slug by id, for the audit events of claims returned here and of
    claims taken or released (review/reviewing/claims.py)."""
    return dict(session.execute(select(Agent.id, Agent.slug).where(Agent.id.in_(ids))).all())
