"""Undo: a reviewer's decision waits COUNTERSIGN_UNDO_SECONDS before it takes effect.

PROTOCOL.md section 16: after a decision, Undo (key `u`) takes it back for the window,
and nothing leaves the server until the window has closed. So a decision in its window
is only a row of `pending_decisions` (migration 0021): the deferral stays `in_review`,
held by the reviewer; the API shows no decision, no callback is queued and the audit
log has no event. `undo` deletes the row. When the window closes the decision is taken
as a decision taken at that moment (review/reviewing/taking_effect.py), with every
check again: one the agent's kill switch, a cancel or the expiry beat in the meantime
is dropped (they win: nothing had left the server).

The window closes on the server's clock, not the browser's: a tab closed during the
window changes nothing. Three things take a due decision into effect, whichever comes
first: a job scheduled for the moment the window closes (rq's scheduler, so within
about a second), the worker's tick (every few seconds: the safety net when Redis lost
the job or the worker was down), and any read that meets it due (the reviewer's card,
the batch page, the agent's GET).
"""

from __future__ import annotations

import logging
import math
import threading
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from approval_queue.jobs import queue
from review import redis_keys
from review.audit.chain import chained_write
from review.errors import DomainError
from review.models import Deferral, PendingDecision, utcnow
from review.reviewing.claims import Holder
from review.services import Services

log = logging.getLogger(__name__)
TAKE_EFFECT_JOB = "approval_queue.maintenance.take_effect_job"
JOB_MARGIN_SECONDS = 0.05  # the job runs just after the window, never just before
JOB_KEY_SECONDS = 60  # how long a scheduled second's key outlives the second itself


class UndoRefused(DomainError):
    """Nothing to undo (it took effect already, or it was never this reviewer's)."""


@dataclass(frozen=True)
class Undone:
    deferral_id: str
    message: str


def held_decision(session: Session, deferral_id: str) -> PendingDecision | None:
    return session.get(PendingDecision, deferral_id)


def held_decisions(session: Session, ids: list[str]) -> dict[str, PendingDecision]:
    """The decisions in their window among `ids`, by deferral id (for the cards)."""
    if not ids:
        return {}
    rows = session.scalars(select(PendingDecision).where(PendingDecision.deferral_id.in_(ids)))
    return {r.deferral_id: r for r in rows}


def hold(
    session: Session,
    deferral: Deferral,
    holder: Holder,
    verdict: str,
    reason: str | None,
    seen_ms: int | None,
    now: datetime,
    window: int,
    edited_args: dict | None = None,
) -> None:
    """Hold a checked decision for `window` seconds (inside the caller's chained_write,
    which serialises it with every other decision on the deferral)."""
    session.add(
        PendingDecision(
            deferral_id=deferral.id,
            user_id=holder.id,
            username=holder.username,
            verdict=verdict,
            reason=reason,
            seen_ms=seen_ms,
            edited_args=edited_args,
            decided_at=now,
            effective_at=now + timedelta(seconds=window),
        )
    )
    session.flush()


def undo(svc: Services, holder: Holder, deferral_id: str, now: datetime | None = None) -> Undone:
    """Take back this reviewer's decision on `deferral_id` while its window is open.

    One conditional DELETE: only the reviewer who decided, only before the window closes;
    the decision taking effect deletes the same row, so exactly one of the two wins.
    Undoing is work on the batch, so it renews the reviewer's lease."""
    now = now or utcnow()
    table = PendingDecision.__table__
    with chained_write(svc.db) as session:
        done = session.execute(
            delete(table).where(
                table.c.deferral_id == deferral_id,
                table.c.user_id == holder.id,
                table.c.effective_at > now,
            )
        ).rowcount
        if done != 1:
            raise UndoRefused(_why_not(session, holder, deferral_id))
        deferrals = Deferral.__table__
        session.execute(
            update(deferrals)
            .where(deferrals.c.claimed_by == holder.id, deferrals.c.status == "in_review")
            .values(lease_expires_at=now + timedelta(seconds=svc.settings.lease_seconds))
        )
    return Undone(deferral_id, "Undone: nothing was decided. Decide it again when ready.")


def _why_not(session: Session, holder: Holder, deferral_id: str) -> str:
    row = held_decision(session, deferral_id)
    if row is not None and row.user_id != holder.id:
        return "Nothing to undo: that decision is another reviewer's."
    if row is not None:
        return "Too late to undo: the decision is taking effect."
    return "Nothing to undo: the decision has taken effect already (or was undone)."


def due_ids(session: Session, now: datetime, limit: int) -> list[str]:
    """Deferrals whose held decision's window has closed, the longest-waiting first."""
    return list(
        session.scalars(
            select(PendingDecision.deferral_id)
            .where(PendingDecision.effective_at <= now)
            .order_by(PendingDecision.effective_at)
            .limit(limit)
        )
    )


def take_due(session: Session, deferral_id: str, now: datetime) -> PendingDecision | None:
    """Remove a held decision whose window has closed and return it, for the caller to
    take into effect in the same transaction; None if it is not due, undone or taken
    already (by another worker or a read)."""
    row = held_decision(session, deferral_id)
    if row is None or row.effective_at > now:
        return None
    table = PendingDecision.__table__
    done = session.execute(
        delete(table).where(table.c.deferral_id == deferral_id, table.c.effective_at <= now)
    ).rowcount
    if done != 1:
        return None
    session.expunge(row)
    return row


def schedule(svc: Services, effective_at: datetime, now: datetime) -> None:
    """A job for the first whole second after the window closes (the worker's tick is the
    safety net), unless one is scheduled for that second already.

    rq's scheduler keeps a job's time in whole seconds (it drops the fraction) and runs it
    once that second has come: a job for 12.7 s was run from 12.0 s, before the window
    closed, and the decision then waited for the tick. A job for the second after the
    window (13 s) runs after it. And since a job takes every due decision
    (`take_effect_due`), the decisions whose windows close within the same second share
    one: the first to schedule it sets the second's key (SET NX), the others find it set
    and send nothing more (about a tenth of a held decision's CPU was rq making and storing
    a job of its own for each; docs/REVIEWING.md)."""
    second = math.ceil(_epoch(effective_at) + JOB_MARGIN_SECONDS)
    ttl = max(math.ceil(second - _epoch(now)), 0) + JOB_KEY_SECONDS
    key = redis_keys.take_effect_job_at(second)
    client = svc.redis.client()
    if _SCHEDULED.has(client, second):
        return  # this process saw the job for this second scheduled: no round trip
    try:
        if not client.set(key, "1", nx=True, ex=ttl):
            _SCHEDULED.add(client, second, now)
            return  # a job for this second is scheduled: it takes this one too
        try:
            queue(client).enqueue_at(
                datetime.fromtimestamp(second, UTC),
                TAKE_EFFECT_JOB,
                job_id=f"take-effect-{second}",
                result_ttl=600,
                failure_ttl=86400,
            )
        except redis.RedisError:
            client.delete(key)  # no job after all: the next decision of this second tries
            raise
        _SCHEDULED.add(client, second, now)
    except redis.RedisError as exc:
        log.warning("no job for a held decision (%s): the worker's tick will take it", exc)


class ScheduledSeconds:
    """The seconds this process knows have their take-effect job (it scheduled it, or
    found its key set), per Redis client: the decisions of a busy second after the first
    send nothing to Redis (its SET NX was the held decision's one round trip after the
    commit). Only seconds still to come are kept. Should the job be lost meanwhile (Redis
    flushed), the worker's tick takes those decisions, as for any job not run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_client: weakref.WeakKeyDictionary[Any, set[int]] = weakref.WeakKeyDictionary()

    def has(self, client: Any, second: int) -> bool:
        with self._lock:
            return second in self._by_client.get(client, ())

    def add(self, client: Any, second: int, now: datetime) -> None:
        past = math.floor(_epoch(now))
        with self._lock:
            known = self._by_client.get(client, set())
            self._by_client[client] = {s for s in known if s >= past} | {second}


_SCHEDULED = ScheduledSeconds()


def _epoch(moment: datetime) -> float:
    """Seconds since the epoch; a naive datetime is UTC, as the database's are."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
