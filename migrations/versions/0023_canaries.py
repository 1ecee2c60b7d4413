"""Canaries: known-bad test deferrals that admins seed among the real ones.

- `deferrals.canary`: the canary's kind (review/canaries/kinds.py); NULL for every real
  deferral. Nullable with no default, so intake (whose PostgreSQL function fills the row
  with `jsonb_populate_record`) needs no change: a real deferral gets NULL.
- `canaries`: who seeded each one, when, and what became of it (`outcome` "caught" or
  "missed", by whom, when, with the time in view): the admin page's list and each
  reviewer's catch rate (review/canaries/, review/reviewing/figures.py).

Revision ID: 0023
Revises: 0022
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from review.models import UTCDateTime

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("deferrals", sa.Column("canary", sa.String(32), nullable=True))
    op.create_table(
        "canaries",
        sa.Column("deferral_id", sa.String(40), sa.ForeignKey("deferrals.id"), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("seeded_by", sa.String(64), nullable=False),
        sa.Column("seeded_at", UTCDateTime(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("decided_by", sa.String(64), nullable=True),
        sa.Column("decided_at", UTCDateTime(), nullable=True),
        sa.Column("seconds_in_view", sa.Float(), nullable=True),
    )
    # The admin page's list, newest first: ORDER BY seeded_at DESC LIMIT n.
    op.create_index("ix_canaries_seeded_at", "canaries", ["seeded_at"])
    # Catch rates per reviewer over a window: WHERE decided_at >= ? GROUP BY decided_by.
    op.create_index("ix_canaries_decided_at", "canaries", ["decided_at", "decided_by"])


def downgrade() -> None:
    op.drop_index("ix_canaries_decided_at", "canaries")
    op.drop_index("ix_canaries_seeded_at", "canaries")
    op.drop_table("canaries")
    op.execute("ALTER TABLE deferrals DROP COLUMN canary")
