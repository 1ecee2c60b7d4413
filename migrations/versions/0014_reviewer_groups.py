"""Reviewer groups (PROTOCOL.md section 10): who may claim what a policy rule routes.

- `groups`: one row per group, by name.
- `group_members`: one row per (group, user). Named `group_name` because `group` is a
  reserved word in SQL. Deleting a group or a user takes their memberships with them.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from review.models import UTCDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "groups",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "group_members",
        sa.Column(
            "group_name",
            sa.String(100),
            sa.ForeignKey("groups.name", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "username",
            sa.String(64),
            sa.ForeignKey("users.username", ondelete="CASCADE"),
            primary_key=True,
        ),
    )
    # groups_of(username), which every claim of a routed deferral asks.
    op.create_index("ix_group_members_username", "group_members", ["username"])


def downgrade() -> None:
    op.drop_index("ix_group_members_username", table_name="group_members")
    op.drop_table("group_members")
    op.drop_table("groups")
