"""Execution reports: what the agent says happened when it ran an approved action.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from review.models import JSONType, UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "executions",
        # One report per deferral: the primary key refuses a second, even a racing one.
        sa.Column("deferral_id", sa.String(40), sa.ForeignKey("deferrals.id"), primary_key=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("action_digest", sa.String(71), nullable=False),
        sa.Column("result", JSONType),
        sa.Column("reported_at", UTCDateTime(), nullable=False),
        sa.Column("webhook_id", sa.String(255), nullable=False),
    )
    # A deferral's callback state on its page: WHERE deferral_id = ? ORDER BY created_at.
    op.create_index("ix_outbox_deferral", "outbox_events", ["deferral_id"])


def downgrade() -> None:
    op.drop_index("ix_outbox_deferral", table_name="outbox_events")
    op.drop_table("executions")
