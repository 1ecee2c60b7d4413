"""A card's history: earlier decisions on the same action, or on the same resource.

An agent that was told no can ask again under a new webhook-id; without this the
second request is a fresh card and a second reviewer may approve what the first
rejected. So each card shows what became of earlier deferrals with the same
`action_digest` (the very same action, from any agent) or the same resource
(`resource_type` and `resource_id`), newest first, a few of each.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from review.models import TERMINAL_STATUSES, Deferral

SHOWN = 3  # per card: the newest few; the item page links to each


@dataclass(frozen=True)
class Earlier:
    id: str
    same: str  # "action" or "resource"
    status: str
    decided_by: list[str]
    reason: str | None
    decided_at: datetime | None
    summary: str


def earlier_decisions(session: Session, items: list[Deferral]) -> dict[str, list[Earlier]]:
    """For each item, the newest few ended deferrals on its action or its resource (one
    small query per item, each served by an index; a batch has a handful of items)."""
    return {d.id: _earlier(session, d) for d in items}


def _earlier(session: Session, d: Deferral) -> list[Earlier]:
    same = [Deferral.action_digest == d.action_digest]
    if d.resource_type and d.resource_id:
        same.append(
            and_(Deferral.resource_type == d.resource_type, Deferral.resource_id == d.resource_id)
        )
    rows = session.execute(
        select(
            Deferral.id,
            Deferral.action_digest,
            Deferral.status,
            Deferral.decided_by,
            Deferral.decision_reason,
            Deferral.decided_at,
            Deferral.summary,
        )
        .where(
            or_(*same),
            Deferral.id != d.id,
            Deferral.status.in_(TERMINAL_STATUSES),
            # A canary's ending would give it away, and it is no agent's history.
            Deferral.canary.is_(None),
        )
        .order_by(Deferral.decided_at.desc())
        .limit(SHOWN)
    ).all()
    return [
        Earlier(
            r.id,
            "action" if r.action_digest == d.action_digest else "resource",
            r.status,
            r.decided_by or [],
            r.decision_reason,
            r.decided_at,
            r.summary,
        )
        for r in rows
    ]
