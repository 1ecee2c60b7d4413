"""A held decision taking effect, prepared before its write (SQLite's lock, PostgreSQL's call).

When a decision's undo window closes, the worker (or a read that meets it due) takes it
into effect (review/reviewing/taking_effect.py): the held row deleted and the decision
taken then, with its receipt, audit event and callback. Under the lock that was every
read and check, the receipt's signature and the event's hash. As for a decision taken at
once (review/reviewing/prepared_decisions.py, whose `built` this shares), the common
one (a verdict, not an edit; one approval ends it; no canary) is prepared first: the held
row, its reviewer and the deferral read and checked, the decision built as of now with
the time in view the reviewer reported when they decided. Under the lock are left the
conditional DELETE of the held row (the same row as read: not undone, not taken by
another worker meanwhile), the approval's row, the ending's conditional UPDATE on the
claim alone (ENDING_ON_CLAIM: a claim with a held decision does not lapse), the
callback's row and the event's append: one transaction, as before.

Anything else, or a race lost (the row gone or decided again, the deferral killed,
cancelled, expired or edited meanwhile): the transaction rolls back and `take_effect`
takes the full path, which reads it all again under the lock and drops or decides it.

On PostgreSQL the same writes are one call of a function in the server
(review/reviewing/effect_call.py, migration 0029), with the same conditions.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from sqlalchemy import bindparam, delete, select

from review.driver_statements import BoundStatement, driver
from review.models import Deferral, PendingDecision, User
from review.reviewing import effect_call
from review.reviewing.claims import Holder
from review.reviewing.decision_checks import Decided, DecisionRefused, check_may_approve
from review.reviewing.ending import ENDING_ON_CLAIM
from review.reviewing.prepared_decisions import (
    PreparedDecision,
    TakeTheFullPath,
    built,
    decided_answer,
    read_for_decision,
    write_decision,
    written_in_one_call,
)
from review.reviewing.reading import assess
from review.services import Services


def prepare(
    svc: Services, deferral_id: str, now: datetime
) -> tuple[PreparedDecision, BoundStatement | None] | None:
    """The held decision on `deferral_id` built to take effect at `now`, with the DELETE
    of its held row (on PostgreSQL in the one call's parameters: None); None when it is
    not due or not the common kind, or the checks find something the full path must
    answer (it drops the decision, or ends it as expired)."""
    # Two one-row Core reads on the driver, no ORM session (Database.first_row_unpinged:
    # the session's join of three models cost the sweep three times both reads): the
    # held row with its reviewer, then, when it is due and a verdict, the deferral with
    # its agent (prepared_decisions.read_for_decision). On PostgreSQL each without a
    # transaction or the pool's ping. The write checks it all again (the held row as
    # read, the deferral as prepared): a change between the two reads loses the write,
    # and the full path reads again under the lock.
    held = svc.db.first_row_unpinged(_READ_HELD, {"id": deferral_id})
    if held is None or held.effective_at > now or held.edited_args is not None:
        return None
    deferral = read_for_decision(svc, deferral_id)
    if deferral is None or not _plainly_claimed(deferral, held.user_id, now):
        return None
    agent = deferral.agent
    identities = {i.lower() for i in (held.username, held.email) if i}
    holder = Holder(held.user_id, held.username, frozenset(identities))
    if held.verdict == "approve":
        try:
            check_may_approve(deferral, holder)
        except DecisionRefused:  # the full path drops it and says why in its log
            return None
    minimum = svc.settings.min_read_seconds  # in view until they decided, as the full path
    reading = assess(held.seen_ms, deferral.claimed_at, held.decided_at, minimum)
    prepared = built(
        svc,
        holder,
        deferral,
        agent,
        held.verdict,
        held.reason,
        now,
        reading,
        renews=False,
        ending_statement=ENDING_ON_CLAIM,
    )
    if prepared.call is not None:  # PostgreSQL: countersign_take_effect's parameters
        call = effect_call.call_params(prepared.call, held.verdict, held.decided_at)
        return replace(prepared, call=call), None
    taking = driver.bind(
        svc.db.engine,
        _TAKE_DUE,
        {
            "deferral_id": held.deferral_id,
            "user_id": held.user_id,
            "verdict": held.verdict,
            "decided_at": held.decided_at,
            "now": now,
        },
    )
    return prepared, taking


def _plainly_claimed(deferral: Deferral, user_id: int, now: datetime) -> bool:
    """Claimed by the reviewer who decided, not expired, one approval ends it, no canary:
    what held_for_decision checks of a decision taking effect, and the kinds prepared."""
    return (
        deferral.status == "in_review"
        and deferral.claimed_by == user_id
        and deferral.expires_at > now
        and deferral.required_approvals <= 1
        and not deferral.canary
    )


def apply(
    svc: Services, prepared: PreparedDecision, taking: BoundStatement | None, now: datetime
) -> Decided:
    """One transaction under the write lock: the held row taken, the approval, the
    conditional UPDATE, the callback, the event. TakeTheFullPath (rolled back) when the
    held row or the deferral is no longer as prepared. On PostgreSQL, one call of a
    function in the server does all of it (nothing written when it loses)."""
    if prepared.call is not None:
        written_in_one_call(svc, prepared, now, effect_call.write)
        return decided_answer(prepared)
    with svc.db.write_core() as (conn, notes):  # the hooks run on `notes` once committed
        if driver.execute_bound(conn, taking).rowcount != 1:  # undone, taken, decided again
            raise TakeTheFullPath
        write_decision(conn, notes, prepared, now)
    return decided_answer(prepared)


_held = PendingDecision.__table__.c
_READ_HELD = (
    select(
        _held.deferral_id,
        _held.user_id,
        _held.verdict,
        _held.reason,
        _held.seen_ms,
        _held.edited_args,
        _held.decided_at,
        _held.effective_at,
        User.username,
        User.email,
    )
    .join_from(PendingDecision.__table__, User.__table__, User.id == _held.user_id)
    .where(_held.deferral_id == bindparam("id"))
)
"""The held row and the reviewer who decided (their username and e-mail: who they are as
a principal, as the full path's Holder), in one read."""


def _take_due():
    c = PendingDecision.__table__.c
    at = c.effective_at.type
    return delete(PendingDecision.__table__).where(
        c.deferral_id == bindparam("deferral_id"),
        c.user_id == bindparam("user_id"),
        c.verdict == bindparam("verdict"),
        c.decided_at == bindparam("decided_at", type_=at),
        c.effective_at <= bindparam("now", type_=at),
    )


_TAKE_DUE = _take_due()
"""undo.take_due's DELETE, of the held row as it was read (not undone and decided again)."""
