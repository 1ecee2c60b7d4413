"""Routing and quorums (PROTOCOL.md section 10): a deferral's reviewer group, the
distinct approvers it needs, and a record of every approval.

- `deferrals.route_group`: only the group's members (and admins) may claim it; NULL:
  any reviewer.
- `deferrals.required_approvals`: distinct approvers needed. Rows from before get what
  COUNTERSIGN_TWO_PERSON_LEVEL gave them (2 from that level up, read from the
  environment as the app reads it; default critical), and 2 where a first approval
  was already given.
- `approvals`: one row per (deferral, approver); the primary key refuses a second
  approval by the same person. `deferrals.first_approved_by` (room for two approvers
  only) is carried over into it, with the time of its `deferral.approval_1_of_2` event,
  and dropped with a plain ALTER TABLE (SQLite 3.35+ and PostgreSQL), not a batch copy
  of the table, which would lose 0007's triggers on it.

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-30
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import op

from review.models import UTCDateTime

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

LEVELS = ("low", "medium", "high", "critical")


def _two_person_levels() -> tuple[str, ...]:
    setting = os.environ.get("COUNTERSIGN_TWO_PERSON_LEVEL", "critical").strip().lower()
    return LEVELS[LEVELS.index(setting) :] if setting in LEVELS else ()


def upgrade() -> None:
    op.add_column("deferrals", sa.Column("route_group", sa.String(100), nullable=True))
    op.add_column(
        "deferrals",
        sa.Column("required_approvals", sa.Integer(), nullable=False, server_default="1"),
    )
    op.create_table(
        "approvals",
        sa.Column(
            "deferral_id",
            sa.String(40),
            sa.ForeignKey("deferrals.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("username", sa.String(64), primary_key=True),
        sa.Column("approved_at", UTCDateTime(), nullable=False),
        sa.Column("action_digest", sa.String(71), nullable=False),
    )
    deferrals = sa.table(
        "deferrals",
        sa.column("id", sa.String),
        sa.column("risk_level", sa.String),
        sa.column("required_approvals", sa.Integer),
        sa.column("first_approved_by", sa.String),
        sa.column("action_digest", sa.String),
        sa.column("created_at", UTCDateTime()),
    )
    events = sa.table(
        "audit_events",
        sa.column("deferral_id", sa.String),
        sa.column("event_type", sa.String),
        sa.column("at", UTCDateTime()),
    )
    levels = _two_person_levels()
    if levels:
        op.execute(
            deferrals.update()
            .where(deferrals.c.risk_level.in_(levels))
            .values(required_approvals=2)
        )
    op.execute(
        deferrals.update()
        .where(deferrals.c.first_approved_by.is_not(None))
        .values(required_approvals=2)
    )
    first_at = (
        sa.select(sa.func.max(events.c.at))
        .where(
            events.c.deferral_id == deferrals.c.id,
            events.c.event_type == "deferral.approval_1_of_2",
        )
        .scalar_subquery()
    )
    approvals = sa.table("approvals", *(sa.column(c) for c in _APPROVAL_COLUMNS))
    op.execute(
        sa.insert(approvals).from_select(
            list(_APPROVAL_COLUMNS),
            sa.select(
                deferrals.c.id,
                deferrals.c.first_approved_by,
                sa.func.coalesce(first_at, deferrals.c.created_at),
                deferrals.c.action_digest,
            ).where(deferrals.c.first_approved_by.is_not(None)),
        )
    )
    op.execute("ALTER TABLE deferrals DROP COLUMN first_approved_by")


_APPROVAL_COLUMNS = ("deferral_id", "username", "approved_at", "action_digest")


def downgrade() -> None:
    op.add_column("deferrals", sa.Column("first_approved_by", sa.String(64), nullable=True))
    # Back to room for one: the earliest approval of a deferral still undecided.
    op.execute(
        "UPDATE deferrals SET first_approved_by = ("
        " SELECT a.username FROM approvals a WHERE a.deferral_id = deferrals.id"
        " ORDER BY a.approved_at LIMIT 1)"
        " WHERE status IN ('pending', 'in_review')"
    )
    op.drop_table("approvals")
    op.execute("ALTER TABLE deferrals DROP COLUMN required_approvals")
    op.execute("ALTER TABLE deferrals DROP COLUMN route_group")
