"""What a reviewer's decision checks before it writes anything, and what it answers.

`held_for_decision` (shared by edits and set-asides): the reviewer holds the deferral
under a live lease and it may still be decided. `check_may_approve`: separation of
duties. `checked_reason`: a rejection says why. `one_reviewer_at_a_time` and
`renew_lease`: the locks and the lease a decision takes. `Decided` is the answer every
decision gives; `DecisionRefused` says why none was taken.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import bindparam, exists, literal_column, text, update
from sqlalchemy.orm import Session

from review.errors import DomainError
from review.identity import identity_key
from review.models import TERMINAL_STATUSES, Deferral, PendingDecision
from review.reviewing import approvals
from review.reviewing.claims import Holder
from review.reviewing.ending import expire
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
    # The ended deferral as the decision left it (its row's values, agent loaded), for an
    # answer that shows it without reading it again; for a decision held for its undo
    # window (effective_at set, a prepared hold), the deferral as its checks read it;
    # None otherwise.
    deferral: Deferral | None = field(default=None, compare=False, repr=False)
    # How many items of the reviewer's batch are still to decide afterwards (live lease,
    # no decision held for undo), counted by the lease renewal; None when not counted.
    left: int | None = None


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


def not_held(session: Session, deferral: Deferral, holder: Holder) -> str:
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
        raise DecisionRefused(not_held(session, deferral, holder))
    return deferral


def check_may_approve(deferral: Deferral, holder: Holder) -> None:
    """Separation of duties: nobody approves what was asked on their own behalf."""
    if identity_key(deferral.principal_id) in holder.identity_keys:
        raise DecisionRefused("You cannot approve a deferral made on your own behalf.")


def checked_reason(verdict: str, reason: str | None) -> str | None:
    if verdict not in ("approve", "reject"):
        raise ValueError(verdict)
    reason = (reason or "").strip() or None
    if verdict == "reject" and not reason:
        raise DecisionRefused("Say why you reject it: pick a reason or type one.")
    if reason and len(reason) > MAX_REASON:
        raise DecisionRefused(f"Keep the reason under {MAX_REASON} characters.")
    return reason


# pg_advisory_xact_lock's first key: "a reviewer's decisions" (the second is the user's id).
_DECISIONS_OF = 0x6465_6369  # "deci"
_ADVISORY = text("SELECT pg_advisory_xact_lock(:space, :key)")


def one_reviewer_at_a_time(session: Session, user_id: int) -> None:
    """PostgreSQL: hold this reviewer's decision lock until the transaction ends (taken
    after the chain's shard lock, before any row). Needed beside the shard lock: two of
    one reviewer's decisions on deferrals in different shards would otherwise both renew
    the lease on the rest of the batch (the same rows, locked in no fixed order).
    SQLite has one writer anyway."""
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        conn.execute(_ADVISORY, {"space": _DECISIONS_OF, "key": user_id})


_table = Deferral.__table__
# Named in full: SQLite writes RETURNING's columns unqualified, which would leave a bare
# `id` inside the subquery.
_held_for_undo = exists().where(PendingDecision.deferral_id == literal_column("deferrals.id"))


def renew_lease(session: Session, svc: Services, holder: Holder, now: datetime) -> dict[str, bool]:
    """Working on a batch keeps the rest of it: every decision renews the lease. Answers
    the renewed items (the one being decided among them), each with whether a decision
    on it waits in its undo window: the batch's count of items left, at no extra read."""
    rows = session.connection().execute(  # Core: no ORM layer for a statement on the table
        update(_table)
        .where(
            _table.c.claimed_by == holder.id,
            _table.c.status == "in_review",
            _table.c.lease_expires_at >= now,
        )
        .values(lease_expires_at=now + timedelta(seconds=svc.settings.lease_seconds))
        .returning(_table.c.id, _held_for_undo)
    )
    return {deferral_id: bool(held) for deferral_id, held in rows}


RENEWAL = (
    update(_table)
    .where(
        _table.c.claimed_by == bindparam("holder_id"),
        _table.c.status == "in_review",
        _table.c.lease_expires_at >= bindparam("now"),
    )
    .values(lease_expires_at=bindparam("lease_until", type_=_table.c.lease_expires_at.type))
    .returning(_table.c.id, _held_for_undo)
)
"""renew_lease's UPDATE with its values as parameters, for a decision that binds it before
SQLite's write lock (review/reviewing/prepared_decisions.py): `renewal_values`."""


def renewal_values(svc: Services, holder: Holder, now: datetime) -> dict[str, object]:
    return {
        "holder_id": holder.id,
        "now": now,
        "lease_until": now + timedelta(seconds=svc.settings.lease_seconds),
    }
