"""A card's history: earlier decisions on the same action, or on the same resource.

An agent that was told no can ask again under a new webhook-id; without this the
second request is a fresh card and a second reviewer may approve what the first
rejected. So each card shows what became of earlier deferrals with the same
`action_digest` (the very same action, from any agent) or the same resource
(`resource_type` and `resource_id`), newest first, a few of each.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import CompoundSelect, Select, String, and_, bindparam, or_, select, union_all
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
    served by an index and cut at SHOWN (a batch page paid one round trip per card). The
    statement for N items is built once (`_earlier_statement`) and bound to the items'
    values: building the union's subqueries anew was a quarter of Start batch's CPU."""
    if not items:
        return {}
    values: dict[str, str | None] = {}
    for n, d in enumerate(items):
        has_resource = bool(d.resource_type and d.resource_id)
        values |= {
            f"card_{n}": d.id,  # the card's row is left out of its own history
            f"digest_{n}": d.action_digest,
            # No resource: NULL, which equals nothing, so only the action matches.
            f"rtype_{n}": d.resource_type if has_resource else None,
            f"rid_{n}": d.resource_id if has_resource else None,
        }
    out: dict[str, list[Earlier]] = {d.id: [] for d in items}
    digests = {d.id: d.action_digest for d in items}
    for r in session.execute(_earlier_statement(len(items)), values):
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


@functools.lru_cache(maxsize=64)
def _earlier_statement(count: int) -> Select | CompoundSelect:
    """The statement for `count` items, their values as bound parameters (`_n` each)."""
    if count == 1:  # a decided card, an item page: the query alone
        return _earlier_query(0)
    return union_all(*(_earlier_query(n).subquery().select() for n in range(count)))


def _earlier_query(n: int) -> Select:
    # One parameter for the card's id: the answer's key, and the row left out (the card).
    card = bindparam(f"card_{n}", type_=String)
    return (
        select(
            card.label("card"),
            Deferral.id,
            Deferral.action_digest,
            Deferral.status,
            Deferral.decided_by,
            Deferral.decision_reason,
            Deferral.decided_at,
            Deferral.summary,
        )
        .where(
            or_(
                Deferral.action_digest == bindparam(f"digest_{n}"),
                and_(
                    Deferral.resource_type == bindparam(f"rtype_{n}"),
                    Deferral.resource_id == bindparam(f"rid_{n}"),
                ),
            ),
            Deferral.id != card,
            Deferral.status.in_(TERMINAL_STATUSES),
            # A canary's ending would give it away, and it is no agent's history.
            Deferral.canary.is_(None),
        )
        .order_by(Deferral.decided_at.desc())
        .limit(SHOWN)
    )
