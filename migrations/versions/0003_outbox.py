"""Callbacks: the outbox, written with each decision, and every delivery attempt.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from review.models import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox_events",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("agent_id", sa.Integer(), sa.ForeignKey("agents.id"), nullable=False),
        sa.Column("deferral_id", sa.String(40)),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("last_status_code", sa.Integer()),
        sa.Column("last_error", sa.Text()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime()),
    )
    # The relay: WHERE status = 'pending' AND next_attempt_at <= now ORDER BY next_attempt_at.
    op.create_index("ix_outbox_status_next", "outbox_events", ["status", "next_attempt_at"])
    # An agent's deliveries: WHERE agent_id = ? ORDER BY created_at DESC.
    op.create_index("ix_outbox_agent_created", "outbox_events", ["agent_id", "created_at"])
    op.create_table(
        "delivery_attempts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("event_id", sa.String(40), sa.ForeignKey("outbox_events.id"), nullable=False),
        sa.Column("attempted_at", UTCDateTime(), nullable=False),
        sa.Column("status_code", sa.Integer()),
        sa.Column("error", sa.Text()),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
    )
    # An event's attempts: WHERE event_id = ? ORDER BY id.
    op.create_index("ix_delivery_attempts_event_id", "delivery_attempts", ["event_id"])


def downgrade() -> None:
    op.drop_table("delivery_attempts")
    op.drop_table("outbox_events")
