"""Fewer index writes per intake (issue 20): five indexes hold only the rows they serve.

An intake's deferral has no claim, lease, hand-over and often no resource, and its two
events (`deferral.received`, `deferral.evaluated`) are none of what an agent's page
lists; yet each of these indexes took an entry (on SQLite a page written to the WAL, on
PostgreSQL an index tuple and its WAL) for every intake. Each becomes partial:

- ix_deferrals_claimed_by_status, ix_deferrals_status_lease, ix_deferrals_handed_to,
  ix_deferrals_resource: WHERE the column each query compares IS NOT NULL (`col = ?`,
  `col < ?` and `col >= ?` imply it for both planners);
- ix_audit_events_agent_type_seq: WHERE event_type is one of the agent page's types
  (review/models/audit.py AGENT_PAGE_EVENTS; the page's query carries the same text).

Same names and columns, so nothing that reads by them changes. docs/SCALING.md has the
plans and the figures.

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None

# Written out: a migration keeps what it did when the models change.
AGENT_PAGE_EVENTS = (
    "agent.created",
    "agent.killed",
    "agent.revived",
    "agent.breaker_tripped",
    "agent.updated",
    "agent.secret_rotated",
    "agent.deactivated",
    "agent.flip_refused",
    "execution.violation",
)
AGENT_PAGE_EVENT_CONDITION = (
    "event_type IN (" + ", ".join(f"'{t}'" for t in AGENT_PAGE_EVENTS) + ")"
)

# (name, table, columns, condition)
PARTIAL = (
    (
        "ix_deferrals_claimed_by_status",
        "deferrals",
        ["claimed_by", "status"],
        "claimed_by IS NOT NULL",
    ),
    (
        "ix_deferrals_status_lease",
        "deferrals",
        ["status", "lease_expires_at"],
        "lease_expires_at IS NOT NULL",
    ),
    ("ix_deferrals_handed_to", "deferrals", ["handed_to"], "handed_to IS NOT NULL"),
    (
        "ix_deferrals_resource",
        "deferrals",
        ["resource_type", "resource_id"],
        "resource_id IS NOT NULL",
    ),
    (
        "ix_audit_events_agent_type_seq",
        "audit_events",
        ["agent", "event_type", "seq"],
        AGENT_PAGE_EVENT_CONDITION,
    ),
)


def upgrade() -> None:
    for name, table, columns, condition in PARTIAL:
        op.drop_index(name, table_name=table)
        where = sa.text(condition)
        op.create_index(name, table, columns, sqlite_where=where, postgresql_where=where)


def downgrade() -> None:
    for name, table, columns, _ in PARTIAL:
        op.drop_index(name, table_name=table)
        op.create_index(name, table, columns)
