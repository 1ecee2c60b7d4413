"""Start batch's pick: the most urgent deferrals a reviewer may take, claimed in one
statement (review/reviewing/claims.py `claim_batch` says which rows may be taken, with
`_batch_takeable`, and writes the claim events).

The statement names the reviewer, the time and the batch's size as bound parameters
(`claim_params`), so the one for a batch without the queue's filters is built once
(claims.py) and each Start batch only binds it: building it anew, its cache key and
the extraction of its values were most of the claim's CPU on SQLite (cProfile: the
statement's construction, `_generate_cache_key` and `construct_params`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Integer, Update, bindparam, func, literal_column, select, union_all, update
from sqlalchemy.orm import Session

from review.models import Agent, Deferral

if TYPE_CHECKING:
    from review.reviewing.claims import Holder

_table = Deferral.__table__
# The reviewer and the moment, as `_batch_takeable` and the statement below bind them.
HOLDER_ID = bindparam("holder_id", type_=Integer)
USERNAME = bindparam("username", type_=_table.c.handed_to.type)
IDENTITY_KEYS = bindparam("identity_keys", expanding=True, type_=_table.c.principal_key.type)
NOW = bindparam("now", type_=_table.c.claimed_at.type)
_WANTED = bindparam("wanted", type_=Integer)
_LEASE_UNTIL = bindparam("lease_until", type_=_table.c.lease_expires_at.type)


def claim_params(
    holder: Holder, now: datetime, lease_until: datetime, wanted: int
) -> dict[str, Any]:
    """The values `claim_statement`'s parameters take for this reviewer's claim."""
    return {
        "holder_id": holder.id,
        "username": holder.username,
        "identity_keys": sorted(holder.identity_keys),
        "now": now,
        "lease_until": lease_until,
        "wanted": wanted,
    }


def claim_statement(takeable: Sequence) -> Update:
    """Start batch's pick and claim as one statement, the conditional UPDATE whose
    RETURNING says what it took (with each agent's slug for the audit events). The pick
    is the most urgent `wanted` of those `takeable` (the conditions), those handed to the
    reviewer first, FOR UPDATE SKIP LOCKED on PostgreSQL; on SQLite the writer lock
    serialises claims.

    The pick reads `wanted` rows down an index by rank, not every pending row: "handed
    to me first, then by rank" as one ORDER BY (a CASE, then rank) is no index's order,
    so both databases read and sorted every pending deferral a reviewer may take, at
    every Start batch (SQLite: a temporary B-tree over ix_deferrals_status_lease). So
    the few handed to the reviewer (`mine`, ix_deferrals_handed_to) and the rest
    (`rest`: handed to nobody, by rank: ix_deferrals_status_rank, or with a level filter
    ix_deferrals_status_level_rank) are each a pick of their own, `rest` cut to what
    `mine` leaves, so no row is locked that is not taken:

        WITH mine AS MATERIALIZED (... handed_to = me ORDER BY rank DESC LIMIT n),
             rest AS MATERIALIZED (... handed_to IS NULL ORDER BY rank DESC
                                   LIMIT n - (SELECT count(*) FROM mine))
        UPDATE deferrals ... FROM (mine UNION ALL rest) AS pick
        WHERE id = pick.id AND status = 'pending'

    Each pick is materialised once, before the UPDATE: PostgreSQL may otherwise run a
    FOR UPDATE SKIP LOCKED subquery more than once and take more than `wanted`."""

    def pick(name: str, handed, limit, by_rank):
        return (
            select(_table.c.id)
            .where(*takeable, handed)
            .order_by(by_rank.desc())
            .limit(limit)
            .with_for_update(skip_locked=True)
            .cte(name)
            .prefix_with("MATERIALIZED")
        )

    # `rank + 0`: no index's order, so SQLite's planner takes ix_deferrals_handed_to (the
    # few rows handed to them, sorted) rather than walk every pending row in rank order.
    by_rank_alone = _table.c.rank + literal_column("0")
    mine = pick("mine", _table.c.handed_to == USERNAME, _WANTED, by_rank_alone)
    left = _WANTED - select(func.count()).select_from(mine).scalar_subquery()
    rest = pick("rest", _table.c.handed_to.is_(None), left, _table.c.rank)
    picked = union_all(select(mine.c.id), select(rest.c.id)).subquery("pick")
    # (SQLite writes RETURNING unqualified: "id = agent_id" there is agents.id against the
    # row's agent_id, as agents has no agent_id column.)
    slug = select(Agent.slug).where(Agent.id == _table.c.agent_id).scalar_subquery()
    return (
        update(_table)
        .where(_table.c.id == picked.c.id, _table.c.status == "pending")
        .values(
            status="in_review",
            claimed_by=HOLDER_ID,
            claimed_at=NOW,
            lease_expires_at=_LEASE_UNTIL,
        )
        .returning(
            _table.c.id,
            _table.c.agent_id,
            _table.c.handed_to,
            _table.c.rank,
            slug.label("agent_slug"),
        )
    )


def claim_most_urgent(
    session: Session, holder: Holder, statement: Update, params: dict[str, Any]
) -> list:
    """Run a `claim_statement` with its `claim_params`: the rows taken, in batch order
    (RETURNING keeps none)."""
    rows = session.execute(statement, params).all()
    return sorted(rows, key=lambda r: (r.handed_to == holder.username, r.rank), reverse=True)
