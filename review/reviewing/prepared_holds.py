"""A decision held for its undo window, prepared before its write (SQLite's lock or one call).

With COUNTERSIGN_UNDO_SECONDS > 0 (the default) a reviewer's decision is checked now and
held as a row of `pending_decisions` (review/reviewing/undo.py) until its window closes.
As review/reviewing/prepared_decisions.py does for a decision taken at once, the common
one (one approval ends it, no canary, not an edit) is prepared first, outside the lock:
the deferral read and checked (held by the reviewer under a live lease, not expired,
separation of duties), the time in view assessed, the lease renewal and the held row's
INSERT bound. Under the lock are left those two statements: one transaction, as before.

The INSERT is conditional: it copies from the deferral's row only while it is still as
the preparation found it (in review, held by this reviewer under a live lease since the
same claim, not expired, one approval ends it), so a kill, an expiry, a lapsed claim,
an edit raising the quorum meanwhile leave it nothing to insert. A decision already held
on the deferral (another tab; an undo just before the lock frees it) is the table's
primary key. Either way the transaction rolls back and `decide` takes the full path
(review/reviewing/decisions.py), which decides under the lock what wins and says so.

On PostgreSQL the same two writes are one call of a function in the server
(review/reviewing/hold_call.py, migration 0028), with the same conditions, and the read
one statement without a transaction or the pool's ping.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, insert, select
from sqlalchemy.exc import IntegrityError

from review.driver_statements import BoundStatement, driver
from review.models import Deferral, PendingDecision
from review.reviewing import hold_call
from review.reviewing.claims import Holder
from review.reviewing.decision_call import LostRace
from review.reviewing.decision_checks import (
    RENEWAL,
    Decided,
    check_may_approve,
    renewal_values,
)
from review.reviewing.decision_writes import held_answer
from review.reviewing.prepared_decisions import plainly_held, read_for_decision
from review.reviewing.reading import Reading, assess
from review.services import Services


@dataclass(frozen=True)
class PreparedHold:
    """What the write is left to do for a held decision, bound already: on SQLite the
    statements for the write lock, on PostgreSQL the one call's parameters."""

    deferral_id: str
    outcome: str  # what it will make of the deferral: approved or rejected
    reading: Reading
    effective_at: datetime
    deferral: Deferral  # as read for the checks (agent joined): the answer's card shows it
    # SQLite:
    renewal: BoundStatement | None = None  # the lease on the reviewer's batch (renew_lease's)
    hold: BoundStatement | None = None  # HOLD_ON_CLAIM
    # PostgreSQL: countersign_hold's parameters (review/reviewing/hold_call.py)
    call: dict[str, Any] | None = None


class HeldElsewhere(Exception):
    """The prepared hold cannot be written as prepared: roll back, decide in full."""


def prepare(
    svc: Services,
    holder: Holder,
    deferral_id: str,
    verdict: str,
    reason: str | None,
    now: datetime,
    seen_ms: int | None,
    window: int,
) -> PreparedHold | None:
    """The held decision prepared, or None when it is not the common kind (or the checks
    find something the full path must answer: it reads again under the lock and says
    what). DecisionRefused for an approval of the reviewer's own deferral."""
    deferral = read_for_decision(svc, deferral_id)
    if deferral is None or not plainly_held(deferral, holder, now):
        return None
    if verdict == "approve":
        check_may_approve(deferral, holder)
    reading = assess(seen_ms, deferral.claimed_at, now, svc.settings.min_read_seconds)
    effective_at = now + timedelta(seconds=window)
    common = {
        "deferral_id": deferral.id,
        "outcome": "approved" if verdict == "approve" else "rejected",
        "reading": reading,
        "effective_at": effective_at,
        "deferral": deferral,
    }
    renewal = renewal_values(svc, holder, now)
    if not svc.db.is_sqlite:  # PostgreSQL: one call (review/reviewing/hold_call.py)
        call = hold_call.call_params(
            svc,
            holder_id=holder.id,
            deferral_id=deferral.id,
            claimed_at=deferral.claimed_at,
            now=now,
            lease_until=renewal["lease_until"],
            username=holder.username,
            verdict=verdict,
            reason=reason,
            seen_ms=reading.reported_ms,
            effective_at=effective_at,
        )
        return PreparedHold(**common, call=call)
    engine = svc.db.engine
    hold = driver.bind(
        engine,
        HOLD_ON_CLAIM,
        {
            "deferral_id": deferral.id,
            "holder_id": holder.id,
            "claimed_at": deferral.claimed_at,
            "now": now,
            "username": holder.username,
            "verdict": verdict,
            "reason": reason,
            "seen_ms": reading.reported_ms,
            "edited_args": None,  # an edit and its approval take the full path
            "decided_at": now,
            "effective_at": effective_at,
        },
    )
    return PreparedHold(**common, renewal=driver.bind(engine, RENEWAL, renewal), hold=hold)


def apply(svc: Services, prepared: PreparedHold) -> Decided:
    """One transaction under the write lock: the lease renewal and the held row.
    HeldElsewhere (rolled back) when the deferral is no longer as prepared. On
    PostgreSQL, one call of a function in the server does both (nothing written when it
    loses)."""
    if prepared.call is not None:
        try:
            left = hold_call.write(svc, prepared.call)
        except LostRace:
            raise HeldElsewhere from None
        return _answer(prepared, left)
    with svc.db.write_core() as (conn, _notes):  # no ORM session: its begin, commit and close cost
        renewed = {i: bool(w) for i, w in driver.execute_bound(conn, prepared.renewal)}
        try:
            held = driver.execute_bound(conn, prepared.hold).rowcount
        except IntegrityError:  # a decision held already (the full path says so)
            raise HeldElsewhere from None
        if held != 1:  # killed, expired, lapsed, edited meanwhile: the full path says
            raise HeldElsewhere
    d_id = prepared.deferral_id
    return _answer(prepared, sum(1 for i, w in renewed.items() if i != d_id and not w))


def _answer(prepared: PreparedHold, left: int) -> Decided:
    """The held answer, with the batch's count and the deferral its checks read (the
    light held card shows them: review/web/batch_pages.py `_held_card`)."""
    p = prepared
    answer = held_answer(p.deferral_id, p.outcome, p.reading, p.effective_at)
    return replace(answer, left=left, deferral=p.deferral)


def _hold_on_claim():
    held, d = PendingDecision.__table__, Deferral.__table__
    c = d.c
    values = {
        "deferral_id": c.id,
        "user_id": c.claimed_by,
        "username": bindparam("username", type_=held.c.username.type),
        "verdict": bindparam("verdict", type_=held.c.verdict.type),
        "reason": bindparam("reason", type_=held.c.reason.type),
        "seen_ms": bindparam("seen_ms", type_=held.c.seen_ms.type),
        # None as the ORM stores it for this column: JSON's null, not SQL's NULL.
        "edited_args": bindparam("edited_args", type_=held.c.edited_args.type),
        "decided_at": bindparam("decided_at", type_=held.c.decided_at.type),
        "effective_at": bindparam("effective_at", type_=held.c.effective_at.type),
    }
    at = c.lease_expires_at.type
    return insert(held).from_select(
        list(values),
        select(*values.values()).where(
            c.id == bindparam("deferral_id"),
            c.status == "in_review",
            c.claimed_by == bindparam("holder_id"),
            c.claimed_at == bindparam("claimed_at", type_=at),  # the claim the time in view ran on
            c.lease_expires_at >= bindparam("now", type_=at),
            c.expires_at > bindparam("now", type_=at),
            c.required_approvals <= 1,  # an edit meanwhile may raise it
            func.coalesce(c.canary, "") == "",  # a canary is decided at once
        ),
    )


HOLD_ON_CLAIM = _hold_on_claim()
"""undo.hold's INSERT as a copy from the deferral's row, only while it is still held as
the decision was prepared for (no row to copy: it did not hold here)."""
