"""Snooze and hand-over (issue 16): a reviewer puts a held deferral back "not before T"
with a reason, or hands it to a named reviewer or a reviewer group.

- `deferrals.not_before`: Start batch offers it to nobody before then; only the reviewer
  who snoozed it (and admins) may claim it from its row or page.
- `deferrals.handed_to`: only that reviewer (and admins) may claim it, until they decide
  it or hand it on.
- `deferrals.set_aside`: what was done, by whom and why ({"kind", "by", "reason", "at",
  "until" | "to_user" | "to_group"}), for the card and the queue row.

All NULL for every existing row: nothing was set aside before.

Revision ID: 0024
Revises: 0023
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from review.models import JSONType, UTCDateTime

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("deferrals", sa.Column("not_before", UTCDateTime(), nullable=True))
    op.add_column("deferrals", sa.Column("handed_to", sa.String(64), nullable=True))
    op.add_column("deferrals", sa.Column("set_aside", JSONType, nullable=True))
    # A reviewer's handed-over items: WHERE status = 'pending' AND handed_to = ?.
    op.create_index("ix_deferrals_handed_to", "deferrals", ["handed_to"])


def downgrade() -> None:
    op.drop_index("ix_deferrals_handed_to", "deferrals")
    op.execute("ALTER TABLE deferrals DROP COLUMN set_aside")
    op.execute("ALTER TABLE deferrals DROP COLUMN handed_to")
    op.execute("ALTER TABLE deferrals DROP COLUMN not_before")
