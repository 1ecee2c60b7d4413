"""Verified principals, intent and credentials (PROTOCOL.md section 17).

- `deferrals.principal_verified`: what the principal's identity provider vouched for when
  the agent forwarded their token, `{"issuer", "subject", "email", "groups"}`; NULL when
  the principal is only claimed (every deferral stored before this upgrade). The token
  itself is never stored.
- `deferrals.intent`: what the human asked for, in their words (untrusted text).
- `executions.credential`: `{"type", "id"}`, the credential the agent used to act.

All nullable, so PostgreSQL's intake function (0008, 0013) writes them unchanged: it
fills the row from the values intake hands it.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from review.models import JSONType

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("deferrals", sa.Column("principal_verified", JSONType, nullable=True))
    op.add_column("deferrals", sa.Column("intent", sa.Text(), nullable=True))
    op.add_column("executions", sa.Column("credential", JSONType, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.drop_column("credential")
    with op.batch_alter_table("deferrals") as batch:
        batch.drop_column("intent")
        batch.drop_column("principal_verified")
