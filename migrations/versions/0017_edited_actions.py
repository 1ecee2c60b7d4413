"""Edit, then approve (PROTOCOL.md section 10), and the policy page's window.

- `deferrals.original_action`, `original_action_digest`: the action as the agent asked
  for it, kept when a reviewer approves edited arguments (`action` and `action_digest`
  then hold the approved ones). NULL: never edited.
- `deferrals.action_patch`: the RFC 6902 patch from the original action to the approved
  one (the resource's `decision.action_patch`). NULL: never edited.
- `ix_deferrals_created`: the policy page's matches over the last 7 days,
  `WHERE created_at >= ?` across every agent.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from review.models import JSONType

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deferrals") as batch:
        batch.add_column(sa.Column("original_action", JSONType, nullable=True))
        batch.add_column(sa.Column("original_action_digest", sa.String(71), nullable=True))
        batch.add_column(sa.Column("action_patch", JSONType, nullable=True))
    # The policy page: every deferral of the last 7 days, WHERE created_at >= ?.
    op.create_index("ix_deferrals_created", "deferrals", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_deferrals_created", "deferrals")
    with op.batch_alter_table("deferrals") as batch:
        batch.drop_column("action_patch")
        batch.drop_column("original_action_digest")
        batch.drop_column("original_action")
