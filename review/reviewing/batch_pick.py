"""Start batch's pick: the most urgent deferrals a reviewer may take, claimed in one
statement (review/reviewing/claims.py `claim_batch` says which rows may be taken, with
`_batch_takeable`, and writes the claim events)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import case, select, update
from sqlalchemy.orm import Session

from review.models import Agent, Deferral

if TYPE_CHECKING:
    from review.reviewing.claims import Holder


def claim_most_urgent(
    session: Session,
    holder: Holder,
    takeable: Sequence,
    now: datetime,
    lease_until: datetime,
    wanted: int,
) -> list:
    """Start batch's pick and claim as one statement, the conditional UPDATE whose
    RETURNING says what it took (with each agent's slug for the audit events):
    `WITH pick AS MATERIALIZED (...) UPDATE deferrals ... FROM pick WHERE id = pick.id
    AND status = 'pending'`. The pick is the most urgent `wanted` of those `takeable`
    (the conditions), FOR UPDATE SKIP LOCKED on PostgreSQL; on SQLite the writer lock
    serialises claims. The rows taken, in batch order (RETURNING keeps none)."""
    table = Deferral.__table__
    handed_to_me = case((table.c.handed_to == holder.username, 1), else_=0)
    pick = (
        select(table.c.id)
        .where(*takeable)
        .order_by(handed_to_me.desc(), table.c.rank.desc())
        .limit(wanted)
        .with_for_update(skip_locked=True)
        # Once, before the UPDATE: PostgreSQL may otherwise run an IN (...) subquery
        # with FOR UPDATE SKIP LOCKED more than once and take more than `wanted`.
        .cte("pick")
        .prefix_with("MATERIALIZED")
    )
    # (SQLite writes RETURNING unqualified: "id = agent_id" there is agents.id against the
    # row's agent_id, as agents has no agent_id column.)
    slug = select(Agent.slug).where(Agent.id == table.c.agent_id).scalar_subquery()
    rows = session.execute(
        update(table)
        .where(table.c.id == pick.c.id, table.c.status == "pending")
        .values(
            status="in_review", claimed_by=holder.id, claimed_at=now, lease_expires_at=lease_until
        )
        .returning(
            table.c.id, table.c.agent_id, table.c.handed_to, table.c.rank, slug.label("agent_slug")
        )
    ).all()
    return sorted(rows, key=lambda r: (r.handed_to == holder.username, r.rank), reverse=True)
