"""Reviewers' decisions: approve or reject a held deferral, alone or several at once.

Each decision is one transaction under the audit chain's lock of its deferral's shard:
checks (status, holder, live lease, expiry: `held_for_decision`, which edits share;
separation of duties, the quorum: review/reviewing/decision_checks.py), then the
conditional UPDATE of review/reviewing/ending.py and its audit event and callback
(review/reviewing/decision_writes.py). An approval short of the deferral's quorum
(`required_approvals`, review/reviewing/approvals.py) is recorded and sends it back to
the queue instead. An approval is signed in the same transaction
(review/reviewing/receipts.py): its receipt is stored with it, so the resource and the
callback carry it, and its claims go into the event. The time the reviewer had the item
in view comes with the decision and goes into its event (review/reviewing/reading.py);
a decision taken sooner than the minimum is flagged there. Several at once:
review/reviewing/bulk.py. Where a decision's time goes: docs/REVIEWING.md.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from review.agents import breakers
from review.audit.chain import chained_write
from review.canaries.deciding import decide_canary
from review.models import Deferral, utcnow
from review.reviewing import approvals, prepared_decisions, prepared_holds, undo
from review.reviewing.claims import Holder
from review.reviewing.decision_checks import (
    MAX_REASON,
    Decided,
    DecisionRefused,
    check_may_approve,
    checked_reason,
    ended_how,
    held_for_decision,
    one_reviewer_at_a_time,
    renew_lease,
)
from review.reviewing.decision_writes import (
    end_decided,
    fast_note,
    held_answer,
    short_of_quorum,
)
from review.reviewing.ending import AlreadyDecided
from review.reviewing.reading import Reading, assess
from review.services import Services

__all__ = [  # what the pages, edits, set-asides, Slack and undo import from here
    "MAX_REASON",
    "Decided",
    "DecisionRefused",
    "after_decided",
    "canary_decided",
    "check_may_approve",
    "decide",
    "decide_in",
    "ended_how",
    "held_for_decision",
    "one_reviewer_at_a_time",
    "renew_lease",
]
# The names review/reviewing/edits.py calls them by.
_renew_lease, _fast_note = renew_lease, fast_note


def decide(
    svc: Services,
    holder: Holder,
    deferral_id: str,
    verdict: str,
    reason: str | None = None,
    now: datetime | None = None,
    seen_ms: int | None = None,
    undo_seconds: int | None = None,
) -> Decided:
    """Approve or reject a deferral the reviewer holds.

    `seen_ms`: how long the item was in view, as the reviewer's browser measured it.
    With COUNTERSIGN_UNDO_SECONDS > 0 the decision is checked now and held that long
    (review/reviewing/undo.py): `Decided.effective_at` says until when `undo.undo` can
    take it back, and nothing changes on the deferral before then; it then takes effect
    as a decision taken at that moment (review/reviewing/taking_effect.py). With 0 it is
    one audited transaction now. `undo_seconds` overrides the setting for a caller that
    has no way to offer undo (0: take effect now). Once it has taken effect, it counts
    towards the agent's rejection breaker.
    """
    now = now or utcnow()
    window = svc.settings.undo_seconds if undo_seconds is None else undo_seconds
    reason = checked_reason(verdict, reason)
    if not window:
        decided = _prepared_first(svc, holder, deferral_id, verdict, reason, now, seen_ms)
    else:
        decided = _held_first(svc, holder, deferral_id, verdict, reason, now, seen_ms, window)
    if decided is not None:
        if decided.effective_at is not None:
            undo.schedule(svc, decided.effective_at, now)
        after_decided(svc, decided)
        return decided
    try:
        # Only this deferral's shard of the chain: decisions on deferrals in other shards
        # go on meanwhile. One reviewer's own decisions still go one at a time, since
        # each renews the lease on the rest of their batch (rows another may hold).
        with chained_write(svc.db, deferrals=[deferral_id]) as session:
            one_reviewer_at_a_time(session, holder.id)
            decided = decide_in(
                svc, session, holder, deferral_id, verdict, reason, now, seen_ms, window=window
            )
    except IntegrityError:  # a second approval by the same person, past the checks
        raise DecisionRefused("Nothing changed: you approved it already.") from None
    if decided.effective_at is not None:
        undo.schedule(svc, decided.effective_at, now)
    after_decided(svc, decided)
    return decided


def _prepared_first(
    svc: Services,
    holder: Holder,
    deferral_id: str,
    verdict: str,
    reason: str | None,
    now: datetime,
    seen_ms: int | None,
) -> Decided | None:
    """The common decision prepared before its write and written after: under SQLite's
    write lock, or in one call on PostgreSQL (review/reviewing/prepared_decisions.py);
    None when it takes the full path."""
    prepared = prepared_decisions.prepare(svc, holder, deferral_id, verdict, reason, now, seen_ms)
    if prepared is None:
        return None
    try:
        return prepared_decisions.apply(svc, holder, prepared, now)
    except prepared_decisions.TakeTheFullPath:
        return None


def _held_first(
    svc: Services,
    holder: Holder,
    deferral_id: str,
    verdict: str,
    reason: str | None,
    now: datetime,
    seen_ms: int | None,
    window: int,
) -> Decided | None:
    """The common decision held for its undo window, prepared before its write: under
    SQLite's write lock, or in one call on PostgreSQL (review/reviewing/prepared_holds.py);
    None when it takes the full path."""
    prepared = prepared_holds.prepare(
        svc, holder, deferral_id, verdict, reason, now, seen_ms, window
    )
    if prepared is None:
        return None
    try:
        return prepared_holds.apply(svc, prepared)
    except prepared_holds.HeldElsewhere:
        return None


def after_decided(svc: Services, decided: Decided) -> None:
    """After the commit: a decision that took effect counts towards the rejection breaker."""
    if decided.agent_slug:
        breakers.after_decision(svc, decided.agent_slug, decided.status, decided.rejection_limit)


def decide_in(
    svc: Services,
    session: Session,
    holder: Holder,
    deferral_id: str,
    verdict: str,
    reason: str | None,
    now: datetime,
    seen_ms: int | None,
    *,
    window: int = 0,
    read_at: datetime | None = None,
    lease_required: bool = True,
) -> Decided:
    """The decision inside `session` (a chained_write): every check, then either held for
    `window` seconds (undo.hold) or taken now. A held decision taking effect comes back
    here with `lease_required=False` (its claim cannot lapse while it waits: claims.py)
    and `read_at` the moment the reviewer decided, which bounds the time in view."""
    held = held_for_decision(session, deferral_id, holder, now, lease_required=lease_required)
    if isinstance(held, Decided):
        return held
    if window and undo.held_decision(session, held.id) is not None:
        raise DecisionRefused("Nothing changed: you decided it already. Undo it to decide again.")
    reading = assess(seen_ms, held.claimed_at, read_at or now, svc.settings.min_read_seconds)
    renewed = renew_lease(session, svc, holder, now) if lease_required else None
    decided = _decided_in(
        svc, session, held, holder, verdict, reason, now, reading, window, lease_required
    )
    if renewed is None:
        return decided
    left = sum(1 for i, waits in renewed.items() if i != held.id and not waits)
    return replace(decided, left=left)


def _decided_in(
    svc: Services,
    session: Session,
    held: Deferral,
    holder: Holder,
    verdict: str,
    reason: str | None,
    now: datetime,
    reading: Reading,
    window: int,
    lease_required: bool,
) -> Decided:
    if verdict == "approve":
        check_may_approve(held, holder)
    if held.canary:  # decided at once, never held for undo: review/canaries/deciding.py
        return canary_decided(session, held, holder, verdict, reason, now, reading)
    if window:
        outcome = "rejected" if verdict == "reject" else _approval_outcome(session, held, holder)
        undo.hold(session, held, holder, verdict, reason, reading.reported_ms, now, window)
        return held_answer(held.id, outcome, reading, now + timedelta(seconds=window))
    if verdict == "reject":
        return end_decided(
            svc,
            session,
            held,
            holder,
            "rejected",
            reason,
            now,
            reading,
            lease_required=lease_required,
        )
    return approve(svc, session, held, holder, reason, now, reading, lease_required=lease_required)


def earlier_approvals(session: Session, deferral: Deferral) -> list[str]:
    """Who approved the deferral's current action before: none to ask for when one
    approval ends it (an approval short of a quorum of 1 cannot have been given, and an
    edit, which may raise the quorum, voids the approvals before it). The primary key of
    approvals still refuses a second row by the same person."""
    if deferral.required_approvals <= 1:
        return []
    return approvals.approvers_of(session, deferral.id)


def _approval_outcome(session: Session, deferral: Deferral, holder: Holder) -> str:
    """What this approval will make of the deferral: "approved", or "pending" when it is
    short of the quorum; DecisionRefused when they approved it already."""
    given = earlier_approvals(session, deferral)
    if holder.username in given:
        raise DecisionRefused(
            "You approved it already: the next approval must come from another reviewer."
        )
    return "approved" if len(given) + 1 >= deferral.required_approvals else "pending"


def approve(
    svc: Services,
    session: Session,
    deferral: Deferral,
    holder: Holder,
    reason: str | None,
    now: datetime,
    reading: Reading,
    lease_required: bool = True,
) -> Decided:
    """The holder's approval of the held deferral's current action: the one that makes
    its quorum approves it; one short of it is recorded, and the deferral goes back to
    the queue for another reviewer."""
    given = earlier_approvals(session, deferral)
    if holder.username in given:
        raise DecisionRefused(
            "You approved it already: the next approval must come from another reviewer."
        )
    approvals.add_approval(session, deferral, holder.username, now)
    if len(given) + 1 < deferral.required_approvals:
        return short_of_quorum(
            session,
            deferral,
            holder,
            [*given, holder.username],
            reason,
            now,
            reading,
            lease_required=lease_required,
        )
    return end_decided(
        svc,
        session,
        deferral,
        holder,
        "approved",
        reason,
        now,
        reading,
        valid_until=now + timedelta(seconds=svc.settings.approval_ttl),
        earlier=given,
        lease_required=lease_required,
    )


def canary_decided(
    session: Session,
    deferral: Deferral,
    holder: Holder,
    verdict: str,
    reason: str | None,
    now: datetime,
    reading: Reading,
) -> Decided:
    """A held canary, decided: closed and told at once (review/canaries/deciding.py)."""
    try:
        outcome, message = decide_canary(
            session, deferral, holder.id, holder.username, verdict, reason, now, reading
        )
    except AlreadyDecided:
        raise DecisionRefused("Nothing changed: someone else decided it first.") from None
    return Decided(deferral.id, "rejected", message, fast=not reading.read, canary=outcome)
