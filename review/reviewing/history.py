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

from sqlalchemy import Select, and_, literal, or_, select, union_all
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
    """For each item, the newest few ended deferrals on its action or its resource.

    One statement for the whole batch: a UNION ALL of one small query per item, each
    served by an index and cut at SHOWN (a batch page paid one round trip per card)."""
    if not items:
        return {}
    if len(items) == 1:  # a decided card, an item page: the query alone
        query = _earlier_query(items[0])
    else:
        query = union_all(*(_earlier_query(d).subquery().select() for d in items))
    out: dict[str, list[Earlier]] = {d.id: [] for d in items}
    digests = {d.id: d.action_digest for d in items}
    for r in session.execute(query):
        out[r.card].append(
            Earlier(
                r.id,
                "action" if r.action_digest == digests[r.card] else "resource",
                r.status,
                r.decided_by or [],
                r.decision_reason,
                r.decided_at,
                r.summary,
            )
        )
    for past in out.values():  # the union keeps no order across its parts
        past.sort(key=lambda e: (e.decided_at is not None, e.decided_at or 0), reverse=True)
    return out


def _earlier_query(d: Deferral) -> Select:
    same = [Deferral.action_digest == d.action_digest]
    if d.resource_type and d.resource_id:
        same.append(
            and_(Deferral.resource_type == d.resource_type, Deferral.resource_id == d.resource_id)
        )
    return (
        select(
            literal(d.id).label("card"),
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
    )
