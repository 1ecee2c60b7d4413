"""The approvals a deferral has gathered towards its quorum (PROTOCOL.md section 10).

A deferral needs `required_approvals` distinct approvers (review/intake/policy_routes.py
sets it at intake; an edit may raise it). Every approval is an `Approval` row, written
in the decision's transaction: the last one that makes the quorum ends the deferral
(review/reviewing/decisions.py), the others send it back to the queue for the next
reviewer. The rows' primary key (deferral, username) refuses a second approval by the
same person, even a racing one; an edit deletes the approvals given before it, since
they were for another action.

Functions here take the caller's session and never commit.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert, null, select, update
from sqlalchemy.orm import Session

from review.models import Approval, Deferral

RECORDED = "deferral.approval_recorded"  # an approval short of the quorum


def approvers_of(session: Session, deferral_id: str) -> list[str]:
    """Who approved the deferral's current action so far, in order."""
    return list(
        session.scalars(
            select(Approval.username)
            .where(Approval.deferral_id == deferral_id)
            .order_by(Approval.approved_at, Approval.username)
        )
    )


def add_approval(session: Session, deferral: Deferral, username: str, now: datetime) -> None:
    """Record `username`'s approval of the deferral's current action. The caller checked
    they had not approved it yet; should a race slip past, the primary key refuses the
    row (IntegrityError) and the caller's transaction rolls back."""
    # Core on the session's connection: the ORM's insert path costs more Python than the row.
    session.connection().execute(
        _INSERT,
        {
            "deferral_id": deferral.id,
            "username": username,
            "approved_at": now,
            "action_digest": deferral.action_digest,
        },
    )


_INSERT = insert(Approval.__table__)


def back_to_the_queue(
    session: Session, deferral_id: str, holder_id: int, now: datetime, lease_required: bool = True
) -> bool:
    """The holder's approval is short of the quorum: release it for the next approver.
    A conditional UPDATE: False when the holder no longer holds it (`lease_required=False`:
    an approval held for its undo window takes effect on the claim alone)."""
    table = Deferral.__table__
    held = [table.c.id == deferral_id, table.c.status == "in_review"]
    held.append(table.c.claimed_by == holder_id)
    if lease_required:
        held.append(table.c.lease_expires_at >= now)
    done = session.execute(
        update(table)
        .where(*held)
        .values(
            status="pending",
            claimed_by=None,
            claimed_at=None,
            lease_expires_at=None,
            # A decision ends a snooze or a hand-over: the next approver may be anyone.
            not_before=None,
            handed_to=None,
            set_aside=null(),
        )
    ).rowcount
    return done == 1


def void_approvals(session: Session, deferral_id: str) -> list[str]:
    """Delete the approvals given so far (an edit changed the action); who gave them."""
    voided = approvers_of(session, deferral_id)
    if voided:
        session.execute(delete(Approval).where(Approval.deferral_id == deferral_id))
    return voided


def count_phrase(given: int, required: int) -> str:
    return f"{given} of {required} approvals"
