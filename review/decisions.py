"""Ending a deferral: one conditional UPDATE and its audit event, in one transaction.

Every way a deferral reaches a terminal status goes through `end_deferral`, so the
rule "only one decision ever wins" lives in one place: the UPDATE names the statuses
it may leave, and a rowcount of 0 means someone else decided first.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from review.agents import Signer
from review.api.errors import ApiError
from review.audit import record_event
from review.models import PENDING_STATUSES, TERMINAL_STATUSES, Deferral, utcnow
from review.runtime import Runtime


class AlreadyDecided(Exception):
    """The deferral left the statuses the caller expected before this change landed."""


def end_deferral(
    session: Session,
    deferral: Deferral,
    outcome: str,
    *,
    actor: tuple[str, str],
    reason: str | None,
    decided_by: list[str],
    from_statuses: tuple[str, ...] = PENDING_STATUSES,
    valid_until: datetime | None = None,
    payload: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> None:
    if outcome not in TERMINAL_STATUSES:
        raise ValueError(f"{outcome!r} is not a terminal status")
    now = now or utcnow()
    result = session.execute(
        update(Deferral)
        .where(Deferral.id == deferral.id, Deferral.status.in_(from_statuses))
        .values(
            status=outcome,
            decided_at=now,
            decision_reason=reason,
            decided_by=decided_by,
            valid_until=valid_until,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        raise AlreadyDecided(deferral.id)
    session.refresh(deferral)
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


def cancel_deferral(rt: Runtime, deferral_id: str, agent: Signer, reason: str) -> Deferral:
    """The agent withdraws its own undecided deferral (PROTOCOL.md 4.3)."""
    with rt.db.write() as session:
        deferral = session.get(Deferral, deferral_id)
        if deferral is None or deferral.agent_id != agent.id:
            raise ApiError(404, "not_found", "no such deferral")
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
            raise ApiError(409, "invalid_state", f"deferral is already {deferral.status}") from None
        return deferral
