"""Callback deliveries as people see them: per deferral, per agent, dead letters, redelivery."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from review.audit.chain import record_event
from review.callbacks.wakeups import note_deliver
from review.models import Agent, DeliveryAttempt, OutboxEvent, utcnow
from review.services import Services

PAGE_SIZE = 50


@dataclass(frozen=True)
class Attempt:
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


@dataclass(frozen=True)
class Delivery:
    id: str
    event_type: str
    deferral_id: str | None
    status: str  # pending, delivered, dead
    attempts: list[Attempt]
    next_attempt_at: datetime | None  # when pending
    created_at: datetime
    finished_at: datetime | None

    @property
    def last(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None


def _with_attempts(session: Session, events: list[OutboxEvent]) -> list[Delivery]:
    by_event: dict[str, list[Attempt]] = {e.id: [] for e in events}
    if events:
        rows = session.execute(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.event_id.in_(list(by_event)))
            .order_by(DeliveryAttempt.id)
        ).scalars()
        for a in rows:
            by_event[a.event_id].append(
                Attempt(a.attempted_at, a.status_code, a.error, a.duration_ms)
            )
    return [
        Delivery(
            e.id,
            e.event_type,
            e.deferral_id,
            e.status,
            by_event[e.id],
            e.next_attempt_at if e.status == "pending" else None,
            e.created_at,
            e.finished_at,
        )
        for e in events
    ]


def for_deferral(session: Session, deferral_id: str) -> list[Delivery]:
    events = session.scalars(
        select(OutboxEvent)
        .where(OutboxEvent.deferral_id == deferral_id)
        .order_by(OutboxEvent.created_at)
    ).all()
    return _with_attempts(session, list(events))


def for_agent(
    session: Session, agent_id: int, *, status: str | None = None, limit: int = PAGE_SIZE
) -> list[Delivery]:
    """The agent's newest deliveries (only dead letters, or only pending ones, if asked)."""
    query = select(OutboxEvent).where(OutboxEvent.agent_id == agent_id)
    if status is not None:
        query = query.where(OutboxEvent.status == status)
    events = session.scalars(query.order_by(OutboxEvent.created_at.desc()).limit(limit)).all()
    return _with_attempts(session, list(events))


@dataclass(frozen=True)
class Health:
    pending: int
    dead: int
    delivered_recently: int  # of the last 100 finished


@dataclass(frozen=True)
class Backlog:
    """An agent's callbacks not delivered: waiting for their next attempt, or dead letters."""

    pending: int = 0
    dead: int = 0


UNDELIVERED = ("pending", "dead")


def backlogs(session: Session) -> dict[int, Backlog]:
    """Every agent's backlog in one GROUP BY (agents with none are absent).

    Served by ix_outbox_status_next: it reads the pending and dead rows it counts, never
    the delivered ones, which pile up.
    """
    counts: dict[int, dict[str, int]] = {}
    for agent_id, status, count in session.execute(
        select(OutboxEvent.agent_id, OutboxEvent.status, func.count())
        .where(OutboxEvent.status.in_(UNDELIVERED))
        .group_by(OutboxEvent.agent_id, OutboxEvent.status)
    ):
        counts.setdefault(agent_id, {})[status] = count
    return {agent_id: Backlog(**by_status) for agent_id, by_status in counts.items()}


def health(session: Session, agent_id: int) -> Health:
    counts = dict(
        session.execute(
            select(OutboxEvent.status, func.count())
            .where(OutboxEvent.agent_id == agent_id, OutboxEvent.status.in_(UNDELIVERED))
            .group_by(OutboxEvent.status)
        ).all()
    )
    recent = session.scalars(
        select(OutboxEvent.status)
        .where(OutboxEvent.agent_id == agent_id, OutboxEvent.status != "pending")
        .order_by(OutboxEvent.created_at.desc())
        .limit(100)
    ).all()
    return Health(
        counts.get("pending", 0), counts.get("dead", 0), sum(s == "delivered" for s in recent)
    )


class NotDead(Exception):
    """Only a dead-lettered callback can be redelivered."""


def redeliver(svc: Services, event_id: str, agent: Agent, by: str, now: datetime | None = None):
    """Give a dead-lettered callback one more attempt, now (audited)."""
    now = now or utcnow()
    with svc.db.write() as session:
        done = session.execute(
            update(OutboxEvent)
            .where(
                OutboxEvent.id == event_id,
                OutboxEvent.agent_id == agent.id,
                OutboxEvent.status == "dead",
            )
            .values(status="pending", next_attempt_at=now, finished_at=None)
            .execution_options(synchronize_session=False)
        ).rowcount
        if done != 1:
            raise NotDead(event_id)
        deferral_id = session.scalar(
            select(OutboxEvent.deferral_id).where(OutboxEvent.id == event_id)
        )
        record_event(
            session,
            actor_kind="user",
            actor_id=by,
            event_type="callback.redelivery_requested",
            agent=agent.slug,
            deferral_id=deferral_id,
            payload={"event_id": event_id},
            at=now,
        )
        note_deliver(session, event_id)
