"""Reviewing: claims with leases, the first of two approvals, what the holder opened.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from review.models import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deferrals") as batch:
        batch.add_column(sa.Column("claimed_by", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("lease_expires_at", UTCDateTime(), nullable=True))
        batch.add_column(
            sa.Column("opened", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("first_approved_by", sa.String(64), nullable=True))
        batch.create_foreign_key("fk_deferrals_claimed_by", "users", ["claimed_by"], ["id"])
    # A reviewer's batch: WHERE claimed_by = ? AND status = 'in_review'.
    op.create_index("ix_deferrals_claimed_by_status", "deferrals", ["claimed_by", "status"])
    # Lapsed claims: WHERE status = 'in_review' AND lease_expires_at < now.
    op.create_index("ix_deferrals_status_lease", "deferrals", ["status", "lease_expires_at"])
    # The queue by level: WHERE status = 'pending' AND risk_level = ? ORDER BY rank DESC,
    # and its capped counts per level.
    op.create_index("ix_deferrals_status_level_rank", "deferrals", ["status", "risk_level", "rank"])


def downgrade() -> None:
    op.drop_index("ix_deferrals_status_level_rank", "deferrals")
    op.drop_index("ix_deferrals_status_lease", "deferrals")
    op.drop_index("ix_deferrals_claimed_by_status", "deferrals")
    with op.batch_alter_table("deferrals") as batch:
        batch.drop_constraint("fk_deferrals_claimed_by", type_="foreignkey")
        batch.drop_column("first_approved_by")
        batch.drop_column("opened")
        batch.drop_column("lease_expires_at")
        batch.drop_column("claimed_by")
