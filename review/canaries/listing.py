"""The admin page's list of canaries: what each asked, for which agent, what became of it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from review.models import Agent, Canary, Deferral


@dataclass(frozen=True)
class CanaryRow:
    deferral_id: str
    agent: str
    kind: str
    summary: str
    risk_level: str
    seeded_by: str
    seeded_at: datetime
    status: str  # the deferral's
    decided_by: str | None
    decided_at: datetime | None
    seconds_in_view: float | None
    caught: bool | None  # None: nobody decided it (open, expired, killed)

    @property
    def outcome(self) -> str:
        """ "caught", "missed", "open" (in the queue or held), or how it ended without one."""
        if self.caught is not None:
            return "caught" if self.caught else "missed"
        return "open" if self.status in ("pending", "in_review") else self.status


def recent_canaries(session: Session, limit: int = 50) -> list[CanaryRow]:
    """The newest `limit` canaries, one statement (ix_canaries_seeded_at)."""
    rows = session.execute(
        select(
            Canary,
            Agent.slug,
            Deferral.summary,
            Deferral.risk_level,
            Deferral.status,
        )
        .join(Deferral, Deferral.id == Canary.deferral_id)
        .join(Agent, Agent.id == Deferral.agent_id)
        .order_by(Canary.seeded_at.desc())
        .limit(limit)
    ).all()
    return [
        CanaryRow(
            c.deferral_id,
            slug,
            c.kind,
            summary,
            level,
            c.seeded_by,
            c.seeded_at,
            status,
            c.decided_by,
            c.decided_at,
            c.seconds_in_view,
            None if c.outcome is None else c.outcome == "caught",
        )
        for c, slug, summary, level, status in rows
    ]
