"""Ending a deferral: one conditional UPDATE and its audit event, in the caller's transaction.

"Only one decision ever wins" lives here: every ending sets the columns of
`terminal_values`, and an UPDATE that names the statuses it may leave, so a rowcount
of 0 means someone else decided first. One deferral ends through `end_deferral`
(reviewers' decisions, expiry, the agent's cancel); the kill switch ends all of an
agent's undecided deferrals in one UPDATE with the same `terminal_values`
(review/agents/killswitch.py), then writes each one's callback and event.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, exists, func, literal_column, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from review.agents.registry import Signer
from review.audit.chain import chained_write, record_event
from review.callbacks import outbox
from review.callbacks.wakeups import note_ended
from review.doors.aap.tables import AapInstance, AapRequest
from review.errors import InvalidState, NotFound
from review.models import PENDING_STATUSES, TERMINAL_STATUSES, Agent, Deferral, utcnow
from review.notifications.models import NotificationItem
from review.observability.metrics import decider, note_decided
from review.resources import deferral_resource
from review.services import Services

_ROW_ID = literal_column("deferrals.id")  # in full: SQLite writes RETURNING's unqualified
# What an ending owes besides the agent's callback, asked in its UPDATE's RETURNING: the
# AAP instance to tell (review/doors/aap/notifications.py's receivers_of) and whether a
# notification told of it (review/notifications/outbox.py's add_decided follows those up).
_AAP_RECEIVER = (
    select(AapInstance.id)
    .join(AapRequest, AapRequest.instance_id == AapInstance.id)
    .where(AapRequest.deferral_id == _ROW_ID, AapInstance.delivery_url.is_not(None))
    .scalar_subquery()
)
_NOTIFIED = exists().where(NotificationItem.deferral_id == _ROW_ID)


class AlreadyDecided(Exception):
    """The deferral left the statuses the caller expected before this change landed."""


def terminal_values(
    outcome: str,
    now: datetime,
    reason: str | None,
    decided_by: list[str],
    valid_until: datetime | None = None,
    receipt: str | None = None,
) -> dict[str, Any]:
    """The columns every ending sets: outcome, when, why, by whom, an approval's signed
    receipt; the claim let go."""
    if outcome not in TERMINAL_STATUSES:
        raise ValueError(f"{outcome!r} is not a terminal status")
    return {
        "status": outcome,
        "decided_at": now,
        "decision_reason": reason,
        "decided_by": decided_by,
        "valid_until": valid_until,
        "receipt": receipt,
        "claimed_by": None,
        "lease_expires_at": None,
    }


def end_deferral(
    session: Session,
    deferral: Deferral,
    outcome: str,
    *,
    actor: tuple[str, str],
    reason: str | None,
    decided_by: list[str],
    from_statuses: tuple[str, ...] = PENDING_STATUSES,
    claimed_by: int | None = None,
    lease_required: bool = True,
    valid_until: datetime | None = None,
    receipt: str | None = None,
    payload: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> None:
    """End one deferral if it is still in `from_statuses`: AlreadyDecided otherwise.

    `lease_required=False`: a reviewer's decision held for its undo window takes effect
    on their claim alone (a claim with a held decision does not lapse: claims.py)."""
    now = now or utcnow()
    conditions = [Deferral.id == deferral.id, Deferral.status.in_(from_statuses)]
    if claimed_by is not None:  # a reviewer's decision holds only while their claim does
        conditions.append(Deferral.claimed_by == claimed_by)
        if lease_required:
            conditions.append(Deferral.lease_expires_at >= now)
    agent = deferral.agent
    # RETURNING the row refreshes the deferral in the same statement (populate_existing):
    # what the callback and the answer show is the row as it now is, with no second read;
    # with it, the follow-ups it may owe, which would otherwise cost a statement each.
    ended = session.execute(
        update(Deferral)
        .where(*conditions)
        .values(**terminal_values(outcome, now, reason, decided_by, valid_until, receipt))
        .returning(Deferral, _AAP_RECEIVER, _NOTIFIED),
        execution_options={"synchronize_session": False, "populate_existing": True},
    ).one_or_none()
    if ended is None:
        raise AlreadyDecided(deferral.id)
    set_committed_value(deferral, "agent", agent)  # unchanged: no read of it again
    _, aap_receiver, notified = ended
    outbox.add_decisions(
        session,
        [deferral],
        now,
        receivers={deferral.id: aap_receiver} if aap_receiver else {},
        notified=[deferral] if notified else [],
    )
    note_ended(session, deferral.id)
    note_decided(session, outcome, decider(actor[0]), deferral.created_at, now)
    record_event(
        session,
        actor_kind=actor[0],
        actor_id=actor[1],
        event_type=f"deferral.{outcome}",
        agent=deferral.agent.slug,
        deferral_id=deferral.id,
        payload={"reason": reason, "decided_by": decided_by, **(payload or {})},
        at=now,
    )


def _ending_by_holder(lease_required: bool = True) -> Any:
    table = Deferral.__table__
    c = table.c
    lease = [c.lease_expires_at >= bindparam("now")] if lease_required else []
    return (
        update(table)
        .where(
            c.id == bindparam("deferral_id"),
            c.status == "in_review",
            c.claimed_by == bindparam("holder_id"),
            *lease,
            # What the decision was prepared for: an edit meanwhile changes these.
            c.action_digest == bindparam("action_digest"),
            c.required_approvals == bindparam("required_approvals"),
            c.risk_level == bindparam("risk_level"),
            c.policy_version == bindparam("policy_version"),
            # Whether the agent takes callbacks: the callback's row was prepared (or not)
            # for what was read, and a callback URL set meanwhile must not go without one.
            exists().where(
                Agent.id == c.agent_id,
                case((func.coalesce(Agent.callback_url, "") == "", 0), else_=1)
                == bindparam("has_callback"),
            ),
        )
        .values({name: bindparam(f"set_{name}", type_=c[name].type) for name in _TERMINAL_COLUMNS})
        .returning(_AAP_RECEIVER, _NOTIFIED)
    )


_TERMINAL_COLUMNS = tuple(terminal_values("expired", utcnow(), None, []))
ENDING_BY_HOLDER = _ending_by_holder()
"""SQLite: a reviewer's ending bound before the write lock (review/reviewing/
prepared_decisions.py, `driver.bind`): end_deferral's conditional UPDATE for a holder
under a live lease, which also requires the action, quorum, risk level and policy the
decision was prepared for and the agent still taking callbacks as it did, and answers
what the ending owes besides the callback (the AAP instance to tell, whether a
notification told of it). No row: it did not end here."""
ENDING_ON_CLAIM = _ending_by_holder(lease_required=False)
"""ENDING_BY_HOLDER on the claim alone, lease or not: a decision held for its undo window
taking effect (review/reviewing/prepared_effects.py; a claim with a held decision does
not lapse)."""


def ending_values(
    deferral: Deferral, holder_id: int, now: datetime, values: dict[str, Any]
) -> dict[str, Any]:
    """ENDING_BY_HOLDER's parameters: `values` (terminal_values) for the `deferral` as read."""
    return {
        "deferral_id": deferral.id,
        "holder_id": holder_id,
        "now": now,
        "action_digest": deferral.action_digest,
        "required_approvals": deferral.required_approvals,
        "risk_level": deferral.risk_level,
        "policy_version": deferral.policy_version,
        "has_callback": 1 if deferral.agent.callback_url else 0,
        **{f"set_{name}": value for name, value in values.items()},
    }


def expire(session: Session, deferral: Deferral, now: datetime) -> None:
    """End an overdue deferral as `expired`: a deny, decided by nobody."""
    end_deferral(
        session,
        deferral,
        "expired",
        actor=("system", "expiry"),
        reason="expired before a decision",
        decided_by=[],
        now=now,
    )


def cancel_deferral(svc: Services, deferral_id: str, agent: Signer, reason: str) -> dict[str, Any]:
    """The agent withdraws its own undecided deferral (PROTOCOL.md 4.3); its resource after."""
    with chained_write(svc.db) as session:
        deferral = session.get(Deferral, deferral_id)
        if deferral is None or deferral.agent_id != agent.id:
            raise NotFound("no such deferral")
        try:
            end_deferral(
                session,
                deferral,
                "cancelled",
                actor=("agent", agent.slug),
                reason=reason,
                decided_by=[],
            )
        except AlreadyDecided:
            session.refresh(deferral)
            raise InvalidState(f"deferral is already {deferral.status}") from None
        return deferral_resource(deferral)
