"""Agent controls: breaker overrides, a trace URL template, deactivation.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from review.models import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("breaker_flood", sa.String(32)))
        batch.add_column(sa.Column("breaker_rejections", sa.Integer()))
        batch.add_column(sa.Column("trace_url_template", sa.String(2000)))
        batch.add_column(sa.Column("deactivated_at", UTCDateTime()))
    # An agent's page: its newest deferrals, and its rates over a window.
    op.create_index("ix_deferrals_agent_created", "deferrals", ["agent_id", "created_at"])
    # An agent's page: its flips, trips and violations, newest first.
    op.create_index(
        "ix_audit_events_agent_type_seq", "audit_events", ["agent", "event_type", "seq"]
    )


def downgrade() -> None:
    op.drop_index("ix_audit_events_agent_type_seq", table_name="audit_events")
    op.drop_index("ix_deferrals_agent_created", table_name="deferrals")
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("deactivated_at")
        batch.drop_column("trace_url_template")
        batch.drop_column("breaker_rejections")
        batch.drop_column("breaker_flood")
