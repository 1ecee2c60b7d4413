"""Reviewers' decisions: approve or reject a held deferral, alone or several at once.

Each decision is one transaction under the audit chain's lock: checks (status, holder,
live lease, expiry: `held_for_decision`, which edits share; separation of duties, the
quorum), then the conditional UPDATE of review/reviewing/ending.py and its audit event
and callback. An approval short of the deferral's quorum (`required_approvals`,
review/reviewing/approvals.py) is recorded and sends it back to the queue instead. An approval is
signed in the same transaction (review/reviewing/receipts.py): its receipt is stored
with it, so the resource and the callback carry it, and its claims go into the event.
The time the reviewer had the item in view comes with the decision and goes into its
event (review/reviewing/reading.py); a decision taken sooner than the minimum is
flagged there. Several at once: review/reviewing/bulk.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from review.agents import breakers
from review.audit.chain import chained_write, record_event
from review.canaries.deciding import decide_canary
from review.errors import DomainError
from review.identity import identity_key
from review.models import TERMINAL_STATUSES, Deferral, utcnow
from review.resources import rfc3339
from review.reviewing import approvals, undo
from review.reviewing.claims import Holder
from review.reviewing.ending import AlreadyDecided, end_deferral, expire
from review.reviewing.live import note_changed
from review.reviewing.patches import edit_evidence
from review.reviewing.reading import Reading, assess
from review.reviewing.receipts import Receipt, issue_receipt
from review.services import Services

MAX_REASON = 2000


class DecisionRefused(DomainError):
    """The decision cannot be taken; the message tells the reviewer why and what now."""


@dataclass(frozen=True)
class Decided:
    deferral_id: str
    status: str  # the deferral's status afterwards
    message: str
    agent_slug: str = ""
    rejection_limit: int = 0  # the agent's rejection breaker (0: off)
    fast: bool = False  # decided before the item counted as read (flagged in the audit)
    # Held for its undo window (review/reviewing/undo.py): it takes effect then, unless undone.
    effective_at: datetime | None = None
    canary: str | None = None  # a canary's outcome, "caught" or "missed" (review/canaries/)


def ended_how(deferral: Deferral) -> str:
    """How an ended deferral ended, in words: "approved by rita, sam", "killed by
    user:ada: refund loop", "expired before a decision"."""
    reason = f": {deferral.decision_reason}" if deferral.decision_reason else ""
    if deferral.status == "expired":
        return "expired before a decision"
    if deferral.status == "cancelled":
        return f"cancelled by the agent {deferral.agent.slug}{reason}"
    if deferral.status == "killed":
        agent = deferral.agent
        by = agent.state_changed_by if agent.state == "killed" else "its agent's kill switch"
        return f"killed by {by}{reason}"
    names = ", ".join(deferral.decided_by or []) or "policy"
    return f"{deferral.status} by {names}{reason}"


def _not_held(session: Session, deferral: Deferral, holder: Holder) -> str:
    """Why a reviewer who does not (or no longer) hold a live deferral cannot decide it."""
    if deferral.status == "pending":
        given = approvals.approvers_of(session, deferral.id)
        if holder.username in given:
            n = given.index(holder.username) + 1
            return (
                f"Nothing changed: you gave it approval {n} of {deferral.required_approvals}; "
                "it waits in the queue for another reviewer."
            )
    if deferral.status == "in_review" and deferral.claimed_by not in (None, holder.id):
        return "Nothing changed: another reviewer holds it now."
    return (
        "Nothing changed: your claim on this item lapsed, so it went back to the queue "
        "(another reviewer may hold it now). Start a new batch to see it again."
    )


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
    reason = _checked_reason(verdict, reason)
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


def after_decided(svc: Services, decided: Decided) -> None:
    """After the commit: a decision that took effect counts towards the rejection breaker."""
    if decided.agent_slug:
        breakers.after_decision(svc, decided.agent_slug, decided.status, decided.rejection_limit)


def _checked_reason(verdict: str, reason: str | None) -> str | None:
    if verdict not in ("approve", "reject"):
        raise ValueError(verdict)
    reason = (reason or "").strip() or None
    if verdict == "reject" and not reason:
        raise DecisionRefused("Say why you reject it: pick a reason or type one.")
    if reason and len(reason) > MAX_REASON:
        raise DecisionRefused(f"Keep the reason under {MAX_REASON} characters.")
    return reason


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
    if lease_required:
        _renew_lease(session, svc, holder, now)
    if verdict == "approve":
        check_may_approve(held, holder)
    if held.canary:  # decided at once, never held for undo: review/canaries/deciding.py
        return canary_decided(session, held, holder, verdict, reason, now, reading)
    if window:
        outcome = "rejected" if verdict == "reject" else _approval_outcome(session, held, holder)
        undo.hold(session, held, holder, verdict, reason, seen_ms, now, window)
        return _held(held, outcome, reading, now + timedelta(seconds=window))
    if verdict == "reject":
        return _end(
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


def _approval_outcome(session: Session, deferral: Deferral, holder: Holder) -> str:
    """What this approval will make of the deferral: "approved", or "pending" when it is
    short of the quorum; DecisionRefused when they approved it already."""
    given = approvals.approvers_of(session, deferral.id)
    if holder.username in given:
        raise DecisionRefused(
            "You approved it already: the next approval must come from another reviewer."
        )
    return "approved" if len(given) + 1 >= deferral.required_approvals else "pending"


def _held(deferral: Deferral, outcome: str, reading: Reading, until: datetime) -> Decided:
    """The answer to a decision held for its undo window (nothing has changed yet)."""
    word = {"approved": "Approved", "rejected": "Rejected", "pending": "Approved"}[outcome]
    then = " (short of its quorum, it then goes back to the queue)" if outcome == "pending" else ""
    return Decided(
        deferral.id,
        outcome,
        f"{word}: Undo (key u) until it takes effect{then}.{_fast_note(reading)}",
        fast=not reading.read,
        effective_at=until,
    )


def held_for_decision(
    session: Session,
    deferral_id: str,
    holder: Holder,
    now: datetime,
    lease_required: bool = True,
) -> Deferral | Decided:
    """The deferral, when `holder` holds it under a live lease and it may still be
    decided (approved, rejected or edited); else DecisionRefused saying why. One that
    expired meanwhile is ended as expired in the caller's transaction, and the answer
    says so (a Decided, not the deferral). `lease_required=False`: a decision held for
    its undo window takes effect on the claim alone."""
    deferral = session.get(Deferral, deferral_id)
    if deferral is None:
        raise DecisionRefused("There is no such deferral.")
    if deferral.status in TERMINAL_STATUSES:
        raise DecisionRefused(f"Nothing changed: it was already {ended_how(deferral)}.")
    if deferral.expires_at <= now:
        expire(session, deferral, now)
        return Decided(
            deferral.id,
            "expired",
            "It expired before your decision and was denied; nothing was approved.",
        )
    lapsed = deferral.lease_expires_at is None or deferral.lease_expires_at < now
    if (
        deferral.status != "in_review"
        or deferral.claimed_by != holder.id
        or (lease_required and lapsed)
    ):
        raise DecisionRefused(_not_held(session, deferral, holder))
    return deferral


def check_may_approve(deferral: Deferral, holder: Holder) -> None:
    """Separation of duties: nobody approves what was asked on their own behalf."""
    if identity_key(deferral.principal_id) in holder.identity_keys:
        raise DecisionRefused("You cannot approve a deferral made on your own behalf.")


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
    given = approvals.approvers_of(session, deferral.id)
    if holder.username in given:
        raise DecisionRefused(
            "You approved it already: the next approval must come from another reviewer."
        )
    approvals.add_approval(session, deferral, holder.username, now)
    if len(given) + 1 < deferral.required_approvals:
        return _short_of_quorum(
            session,
            deferral,
            holder,
            [*given, holder.username],
            reason,
            now,
            reading,
            lease_required=lease_required,
        )
    return _end(
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


# pg_advisory_xact_lock's first key: "a reviewer's decisions" (the second is the user's id).
_DECISIONS_OF = 0x6465_6369  # "deci"


def one_reviewer_at_a_time(session: Session, user_id: int) -> None:
    """PostgreSQL: hold this reviewer's decision lock until the transaction ends (taken
    after the chain's shard lock, before any row). SQLite has one writer anyway."""
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        conn.execute(_ADVISORY, {"space": _DECISIONS_OF, "key": user_id})


_ADVISORY = text("SELECT pg_advisory_xact_lock(:space, :key)")


def _renew_lease(session: Session, svc: Services, holder: Holder, now: datetime) -> None:
    """Working on a batch keeps the rest of it: every decision renews the lease."""
    table = Deferral.__table__
    session.execute(
        update(table)
        .where(
            table.c.claimed_by == holder.id,
            table.c.status == "in_review",
            table.c.lease_expires_at >= now,
        )
        .values(lease_expires_at=now + timedelta(seconds=svc.settings.lease_seconds))
    )


def _end(
    svc: Services,
    session: Session,
    deferral: Deferral,
    holder: Holder,
    outcome: str,
    reason: str | None,
    now: datetime,
    reading: Reading,
    valid_until: datetime | None = None,
    earlier: list[str] | None = None,
    lease_required: bool = True,
) -> Decided:
    """End the held deferral; `earlier`: the approvals before the holder's (an approval)."""
    decided_by = [*(earlier or []), holder.username]
    receipt = None
    if outcome == "approved" and valid_until is not None:
        receipt = issue_receipt(svc.settings, deferral, decided_by, now, valid_until)
    try:
        end_deferral(
            session,
            deferral,
            outcome,
            actor=("user", holder.username),
            reason=reason,
            decided_by=decided_by,
            from_statuses=("in_review",),
            claimed_by=holder.id,
            lease_required=lease_required,
            valid_until=valid_until,
            receipt=receipt.token if receipt else None,
            now=now,
            payload={
                **_decision_payload(deferral, outcome, valid_until, receipt),
                **edit_evidence(svc.redactor, deferral),  # approved edited args: the patch
                **_reading_payload(reading),
            },
        )
    except AlreadyDecided:
        raise DecisionRefused("Nothing changed: someone else decided it first.") from None
    word = "Approved" if outcome == "approved" else "Rejected"
    return Decided(
        deferral.id,
        outcome,
        f"{word}.{_fast_note(reading)}",
        agent_slug=deferral.agent.slug,
        rejection_limit=breakers.rejection_limit(svc, deferral.agent),
        fast=not reading.read,
    )


def _decision_payload(
    deferral: Deferral, outcome: str, valid_until: datetime | None, receipt: Receipt | None
) -> dict[str, object]:
    """What the decision's audit event adds: an approval says until when it may run, and
    the claims of the receipt it was given (signed with the key `receipt_kid`)."""
    payload: dict[str, object] = {
        "risk_level": deferral.risk_level,
        "action_digest": deferral.action_digest,
    }
    if outcome == "approved":
        payload["valid_until"] = rfc3339(valid_until)
    if receipt is not None:
        payload["receipt"] = receipt.claims
        payload["receipt_kid"] = receipt.kid
    return payload


def _reading_payload(reading: Reading) -> dict[str, object]:
    """The time in view, and "fast" when the decision came before the item counted as read."""
    return {**reading.audit(), "fast": not reading.read}


def _fast_note(reading: Reading) -> str:
    if reading.read:
        return ""
    return f" (flagged: decided after {reading.seconds:.1f} s in view, under {reading.minimum} s)"


def _short_of_quorum(
    session: Session,
    deferral: Deferral,
    holder: Holder,
    given: list[str],
    reason: str | None,
    now: datetime,
    reading: Reading,
    lease_required: bool = True,
) -> Decided:
    """Record an approval short of the quorum; the deferral goes back to the queue."""
    if not approvals.back_to_the_queue(session, deferral.id, holder.id, now, lease_required):
        raise DecisionRefused("Nothing changed: someone else acted on it first.")
    note_changed(session, deferral.id)  # back in the queue with an approval (live pages)
    required = deferral.required_approvals
    record_event(
        session,
        actor_kind="user",
        actor_id=holder.username,
        event_type=approvals.RECORDED,
        agent=deferral.agent.slug,
        deferral_id=deferral.id,
        payload={
            "reason": reason,
            "risk_level": deferral.risk_level,
            "action_digest": deferral.action_digest,
            "approvals": given,
            "required_approvals": required,
            **_reading_payload(reading),
        },
        at=now,
    )
    count = approvals.count_phrase(len(given), required)
    return Decided(
        deferral.id,
        "pending",
        f"{count}: it goes back to the queue for another reviewer." + _fast_note(reading),
        fast=not reading.read,
    )
