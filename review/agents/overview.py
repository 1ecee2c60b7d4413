"""What the agent pages show: each agent's state and health, and one agent's record.

Every read is bounded and served by an index or a column: undecided deferrals per agent
(`agents.undecided`, kept by the database), the newest deferrals and a 30-day window
(agent_id, created_at), the agent's flips, trips and violations (agent, event_type, seq).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from review.callbacks import deliveries
from review.models import Agent, AuditEvent, Deferral, Execution, utcnow
from review.models.audit import AGENT_FLIP_EVENTS, AGENT_PAGE_EVENT_CONDITION

WINDOW_DAYS = 30


@dataclass(frozen=True)
class AgentRow:
    agent: Agent
    owners: list[str]
    undecided: int
    last_deferral_at: datetime | None
    backlog: deliveries.Backlog

    @property
    def health_line(self) -> str:
        parts = []
        if self.agent.deactivated_at is not None:
            return "deactivated"
        dead, waiting = self.backlog.dead, self.backlog.pending
        if dead:
            parts.append(f"{dead} dead callback{'s' if dead != 1 else ''}")
        if waiting:
            parts.append(f"{waiting} callback{'s' if waiting != 1 else ''} waiting")
        if not parts:
            parts.append("callbacks healthy" if self.agent.callback_url else "no callback URL")
        return ", ".join(parts)


def agent_rows(session: Session) -> list[AgentRow]:
    """Every agent's row in three statements, however many agents there are: the agents
    with their newest deferral's time (a correlated MAX, one index probe per agent on
    (agent_id, created_at)), their owners (selectinload), and all callback backlogs."""
    last_deferral_at = (
        select(func.max(Deferral.created_at))
        .where(Deferral.agent_id == Agent.id)
        .correlate(Agent)
        .scalar_subquery()
    )
    found = session.execute(
        select(Agent, last_deferral_at).options(selectinload(Agent.owners)).order_by(Agent.slug)
    ).all()
    backlogs = deliveries.backlogs(session)
    return [
        AgentRow(
            agent,
            sorted(u.username for u in agent.owners),
            agent.undecided,  # kept by the database (migration 0007)
            last,
            backlogs.get(agent.id, deliveries.Backlog()),
        )
        for agent, last in found
    ]


@dataclass(frozen=True)
class Record:
    """One audit event of the agent's own history, payload parsed."""

    seq: int
    at: datetime
    actor: str
    event_type: str
    payload: dict[str, Any]


@dataclass
class Detail:
    agent: Agent
    owners: list[str]
    undecided: int
    history: list[Record]
    violations: list[Record]
    recent: list[Deferral]
    outcomes: dict[str, int] = field(default_factory=dict)  # last WINDOW_DAYS, by status
    median_decision_seconds: float | None = None
    health: deliveries.Health | None = None
    # The agent's execution reports: of the recent deferrals, by id; and the last
    # WINDOW_DAYS' reports by outcome.
    executions: dict[str, Execution] = field(default_factory=dict)
    executed: dict[str, int] = field(default_factory=dict)

    @property
    def decided(self) -> int:
        return self.outcomes.get("approved", 0) + self.outcomes.get("rejected", 0)

    def rate(self, status: str) -> str:
        if not self.decided:
            return "–"
        return f"{100 * self.outcomes.get(status, 0) / self.decided:.0f}%"


def _records(session: Session, slug: str, types: tuple[str, ...], limit: int) -> list[Record]:
    """The agent's newest events of `types` (some of AGENT_PAGE_EVENTS): the condition of
    ix_audit_events_agent_type_seq, which holds only those, lets both planners use it."""
    events = session.scalars(
        select(AuditEvent)
        .where(
            AuditEvent.agent == slug,
            AGENT_PAGE_EVENT_CONDITION,
            AuditEvent.event_type.in_(types),
        )
        .order_by(AuditEvent.seq.desc())
        .limit(limit)
    ).all()
    return [
        Record(e.seq, e.at, f"{e.actor_kind}:{e.actor_id}", e.event_type, json.loads(e.payload))
        for e in events
    ]


def agent_detail(session: Session, agent: Agent, now: datetime | None = None) -> Detail:
    now = now or utcnow()
    since = now - timedelta(days=WINDOW_DAYS)
    recent = session.scalars(
        select(Deferral)
        .where(Deferral.agent_id == agent.id)
        .order_by(Deferral.created_at.desc())
        .limit(20)
    ).all()
    outcomes = dict(
        session.execute(
            select(Deferral.status, func.count())
            .where(
                Deferral.agent_id == agent.id,
                Deferral.created_at >= since,
                Deferral.canary.is_(None),  # canaries are not the agent's (review/canaries/)
            )
            .group_by(Deferral.status)
        ).all()
    )
    timings = session.execute(
        select(Deferral.created_at, Deferral.decided_at)
        .where(
            Deferral.agent_id == agent.id,
            Deferral.created_at >= since,
            Deferral.status.in_(("approved", "rejected")),
            Deferral.canary.is_(None),
        )
        .order_by(Deferral.created_at.desc())
        .limit(500)
    ).all()
    median = statistics.median((d - c).total_seconds() for c, d in timings) if timings else None
    executions = {
        e.deferral_id: e
        for e in session.scalars(
            select(Execution).where(Execution.deferral_id.in_([d.id for d in recent]))
        )
    }
    executed = dict(
        session.execute(
            select(Execution.outcome, func.count())
            .join(Deferral, Deferral.id == Execution.deferral_id)
            # ix_deferrals_agent_created, then each one's report by its primary key
            .where(Deferral.agent_id == agent.id, Deferral.created_at >= since)
            .group_by(Execution.outcome)
        ).all()
    )
    return Detail(
        agent=agent,
        owners=sorted(u.username for u in agent.owners),
        undecided=agent.undecided,
        history=_records(session, agent.slug, AGENT_FLIP_EVENTS, 50),
        violations=_records(session, agent.slug, ("execution.violation",), 20),
        recent=list(recent),
        outcomes=outcomes,
        median_decision_seconds=median,
        health=deliveries.health(session, agent.id),
        executions=executions,
        executed=executed,
    )


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
