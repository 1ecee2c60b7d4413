"""What a reviewer's decision writes, in the caller's transaction (a chained_write): the
ending of the deferral (review/reviewing/ending.py's conditional UPDATE, its audit event
and callback) with an approval's signed receipt, or an approval short of the quorum
that sends the deferral back to the queue; and the words the reviewer is answered with.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from review.agents import breakers
from review.audit.chain import record_event
from review.models import Deferral
from review.resources import rfc3339
from review.reviewing import approvals
from review.reviewing.claims import Holder
from review.reviewing.decision_checks import Decided, DecisionRefused
from review.reviewing.ending import AlreadyDecided, end_deferral
from review.reviewing.live import note_changed
from review.reviewing.patches import edit_evidence
from review.reviewing.reading import Reading
from review.reviewing.receipts import Receipt, issue_receipt
from review.services import Services


def end_decided(
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
                **decision_payload(deferral, outcome, valid_until, receipt),
                **edit_evidence(svc.redactor, deferral),  # approved edited args: the patch
                **reading_payload(reading),
            },
        )
    except AlreadyDecided:
        raise DecisionRefused("Nothing changed: someone else decided it first.") from None
    word = "Approved" if outcome == "approved" else "Rejected"
    return Decided(
        deferral.id,
        outcome,
        f"{word}.{fast_note(reading)}",
        agent_slug=deferral.agent.slug,
        rejection_limit=breakers.rejection_limit(svc, deferral.agent),
        fast=not reading.read,
        deferral=deferral,
    )


def decision_payload(
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


def reading_payload(reading: Reading) -> dict[str, object]:
    """The time in view, and "fast" when the decision came before the item counted as read."""
    return {**reading.audit(), "fast": not reading.read}


def held_answer(deferral_id: str, outcome: str, reading: Reading, until: datetime) -> Decided:
    """The answer to a decision held for its undo window (nothing has changed yet):
    `outcome`, what it will make of the deferral (approved, rejected, or pending: short
    of its quorum)."""
    word = {"approved": "Approved", "rejected": "Rejected", "pending": "Approved"}[outcome]
    then = " (short of its quorum, it then goes back to the queue)" if outcome == "pending" else ""
    return Decided(
        deferral_id,
        outcome,
        f"{word}: Undo (key u) until it takes effect{then}.{fast_note(reading)}",
        fast=not reading.read,
        effective_at=until,
    )


def fast_note(reading: Reading) -> str:
    if reading.read:
        return ""
    return f" (flagged: decided after {reading.seconds:.1f} s in view, under {reading.minimum} s)"


def short_of_quorum(
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
            **reading_payload(reading),
        },
        at=now,
    )
    count = approvals.count_phrase(len(given), required)
    return Decided(
        deferral.id,
        "pending",
        f"{count}: it goes back to the queue for another reviewer." + fast_note(reading),
        fast=not reading.read,
    )
