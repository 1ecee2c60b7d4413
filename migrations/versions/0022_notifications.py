"""Notifications (PROTOCOL.md section 14): the outbox of messages, their deferrals, the
stages told, people's preferences, the service's own sealed secrets.

Revision ID: 0022
Revises: 0021
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from review.models import JSONType, UTCDateTime

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("tier", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("address", sa.String(320), nullable=True),
        sa.Column("agent_id", sa.Integer(), sa.ForeignKey("agents.id"), nullable=True),
        sa.Column("payload", JSONType, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("provider_ref", sa.String(500), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
    )
    # The sender: WHERE status = 'pending' AND next_attempt_at <= now ORDER BY next_attempt_at.
    op.create_index("ix_notifications_status_next", "notifications", ["status", "next_attempt_at"])
    # The admin page: newest first.
    op.create_index("ix_notifications_created", "notifications", ["created_at"])
    op.create_table(
        "notification_items",
        sa.Column(
            "notification_id",
            sa.String(40),
            sa.ForeignKey("notifications.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("deferral_id", sa.String(40), primary_key=True),
    )
    # A deferral's messages: follow-ups, time to decision, earlier posts to update.
    op.create_index("ix_notification_items_deferral", "notification_items", ["deferral_id"])
    op.create_table(
        "notification_marks",
        sa.Column("subject", sa.String(64), primary_key=True),
        sa.Column("stage", sa.String(32), primary_key=True),
        sa.Column("at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "notification_preferences",
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), primary_key=True),
        sa.Column("channels", JSONType, nullable=False),
        sa.Column("digest", sa.Boolean(), nullable=False),
        sa.Column("quiet_from", sa.String(5), nullable=True),
        sa.Column("quiet_until", sa.String(5), nullable=True),
        sa.Column("timezone", sa.String(64), nullable=False),
    )
    op.create_table(
        "service_secrets",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("ciphertext", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(32), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("service_secrets")
    op.drop_table("notification_preferences")
    op.drop_table("notification_marks")
    op.drop_index("ix_notification_items_deferral", "notification_items")
    op.drop_table("notification_items")
    op.drop_index("ix_notifications_created", "notifications")
    op.drop_index("ix_notifications_status_next", "notifications")
    op.drop_table("notifications")
