"""Reading, not opening: when a claim began; earlier decisions; keyboard shortcuts per user.

- `deferrals.claimed_at`: when the current holder claimed it. Time in view is measured
  in the reviewer's browser and sent with the decision; the server caps it at the time
  since the claim, the one bound it can check (review/reviewing/reading.py).
- `deferrals.opened` goes: "opened" was a request per card, sent when a card took the
  focus (or a Select box was ticked), and it let bulk approval take items nobody read.
  Dropped with a plain ALTER TABLE (SQLite 3.35+ and PostgreSQL), not a batch copy of
  the table, which would lose 0007's triggers on it.
- Indexes for a card's "earlier decisions": the same action (`action_digest`) or the
  same resource (`resource_type`, `resource_id`), so a re-asked action shows its history.
- `users.keyboard_shortcuts`: single-key shortcuts on the reviewer pages can be turned
  off per user (PROTOCOL.md section 16, WCAG 2.1.4). On for everyone to begin with.

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from review.models import UTCDateTime

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("deferrals", sa.Column("claimed_at", UTCDateTime(), nullable=True))
    op.execute("ALTER TABLE deferrals DROP COLUMN opened")
    # A card's earlier decisions on the same action: WHERE action_digest = ? AND id <> ?.
    op.create_index("ix_deferrals_action_digest", "deferrals", ["action_digest"])
    # ... and on the same resource: WHERE resource_type = ? AND resource_id = ?.
    op.create_index("ix_deferrals_resource", "deferrals", ["resource_type", "resource_id"])
    op.add_column(
        "users",
        sa.Column("keyboard_shortcuts", sa.Boolean(), nullable=False, server_default=sa.true()),
    )


def downgrade() -> None:
    op.execute("ALTER TABLE users DROP COLUMN keyboard_shortcuts")
    op.drop_index("ix_deferrals_resource", "deferrals")
    op.drop_index("ix_deferrals_action_digest", "deferrals")
    op.add_column(
        "deferrals",
        sa.Column("opened", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.execute("ALTER TABLE deferrals DROP COLUMN claimed_at")
