"""Held decisions taking effect once their undo window has closed (review/reviewing/undo.py).

Taking effect is the decision's own transaction, run then: the held row is deleted and
review/reviewing/decisions.py's `decide_in` runs every check again and ends the deferral
(or records the first of two approvals), with its audit event, its callback and its
receipt, all stamped with the moment it takes effect; callback latency counts from
there. The time in view stays the one the reviewer's browser reported when they
decided. A check that fails now drops the decision, and the deferral keeps what beat
it: the agent's kill switch, the agent's cancel, the expiry (a deadline the agent set
is not stretched by an undo window). Nothing of a dropped decision had left the server.

The reviewer's lease is not needed (a claim with a held decision does not lapse), so a
decision whose window closes with its tab gone still takes effect. The common one is
prepared before its write (review/reviewing/prepared_effects.py: under SQLite's writer
lock, or in one call on PostgreSQL), and comes here in full only when it is not that
kind or something changed meanwhile.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select

from review.audit.chain import chained_write
from review.models import PendingDecision, User, utcnow
from review.reviewing import decisions, prepared_effects, undo
from review.reviewing.claims import Holder
from review.reviewing.decisions import Decided, DecisionRefused
from review.reviewing.prepared_decisions import TakeTheFullPath
from review.services import Services

log = logging.getLogger(__name__)
SWEEP_BATCH = 100


def take_effect(svc: Services, deferral_id: str, now: datetime | None = None) -> Decided | None:
    """Take the held decision on `deferral_id` into effect if its window has closed;
    None when there is none due (not held, undone, not due yet, taken already) or when
    it was dropped because something else ended the deferral first."""
    now = now or utcnow()
    decided = _prepared_first(svc, deferral_id, now)
    if decided is not None:
        decisions.after_decided(svc, decided)
        return decided
    with chained_write(svc.db) as session:
        held = undo.take_due(session, deferral_id, now)
        if held is None:
            return None
        try:
            decided = _decide(svc, session, held, now)
        except DecisionRefused as refused:  # the deletion stands: nothing else was written
            log.info("held decision on %s dropped: %s", deferral_id, refused.message)
    if decided is not None:
        decisions.after_decided(svc, decided)
    return decided


def _prepared_first(svc: Services, deferral_id: str, now: datetime) -> Decided | None:
    """The common held decision prepared before its write and taken into effect under
    SQLite's write lock or in one call on PostgreSQL (review/reviewing/prepared_effects.py);
    None: the full path."""
    prepared = prepared_effects.prepare(svc, deferral_id, now)
    if prepared is None:
        return None
    try:
        return prepared_effects.apply(svc, *prepared, now)
    except TakeTheFullPath:
        return None


def _decide(svc: Services, session, held: PendingDecision, now: datetime) -> Decided:
    user = session.get(User, held.user_id)
    identities = {i.lower() for i in (user.username, user.email) if i}
    holder = Holder(user.id, user.username, frozenset(identities))
    if held.edited_args is not None:
        from review.reviewing import edits  # edits imports decisions, as this module does

        return edits.edit_in(
            svc,
            session,
            holder,
            held.deferral_id,
            held.edited_args,
            held.reason,
            now,
            held.seen_ms,
            read_at=held.decided_at,
            lease_required=False,
        )
    return decisions.decide_in(
        svc,
        session,
        holder,
        held.deferral_id,
        held.verdict,
        held.reason,
        now,
        held.seen_ms,
        read_at=held.decided_at,
        lease_required=False,
    )


def take_effect_due(svc: Services, now: datetime | None = None) -> int:
    """The sweep: every held decision whose window has closed (up to SWEEP_BATCH), each
    in its own transaction; how many took effect. Run by the scheduled job and the
    worker's tick."""
    now = now or utcnow()
    due = svc.db.read_unpinged(lambda session: undo.due_ids(session, now, SWEEP_BATCH))
    return sum(1 for deferral_id in due if take_effect(svc, deferral_id, now) is not None)


def take_effect_if_due(svc: Services, ids: list[str], now: datetime | None = None) -> int:
    """For reads that show these deferrals: take their due held decisions into effect
    first, so no page or answer shows a window that has closed. One small read when
    none is held: one statement, on PostgreSQL without BEGIN, COMMIT or the pool's ping
    (`read_unpinged`: one round trip, not four), as is the sweep's."""
    if not ids:
        return 0
    now = now or utcnow()
    due = svc.db.read_unpinged(
        lambda session: list(
            session.scalars(
                select(PendingDecision.deferral_id).where(
                    PendingDecision.deferral_id.in_(ids), PendingDecision.effective_at <= now
                )
            )
        )
    )
    return sum(1 for deferral_id in due if take_effect(svc, deferral_id, now) is not None)
