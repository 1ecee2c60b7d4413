"""Undo: a reviewer's decision waits out its window in `pending_decisions`.

A decision inside its COUNTERSIGN_UNDO_SECONDS window changes nothing on the deferral
(it stays `in_review`, held by the reviewer) and writes no audit event or callback; it
is a row here until it takes effect or is undone (PROTOCOL.md section 16,
review/reviewing/undo.py). One row per deferral at most.

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from review.models import UTCDateTime

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pending_decisions",
        sa.Column("deferral_id", sa.String(40), sa.ForeignKey("deferrals.id"), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("seen_ms", sa.Integer(), nullable=True),
        sa.Column("edited_args", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=True),
        sa.Column("decided_at", UTCDateTime(), nullable=False),
        sa.Column("effective_at", UTCDateTime(), nullable=False),
    )
    # The sweep of due decisions: WHERE effective_at <= now ORDER BY effective_at.
    op.create_index("ix_pending_decisions_effective_at", "pending_decisions", ["effective_at"])


def downgrade() -> None:
    op.drop_index("ix_pending_decisions_effective_at", "pending_decisions")
    op.drop_table("pending_decisions")
