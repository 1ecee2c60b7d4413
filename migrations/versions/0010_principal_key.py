"""Separation of duties compares normalised identities: `deferrals.principal_key`.

A reviewer may not approve a deferral made on their own behalf. The principal's id is
text the agent chose, so it is compared as `review.identity.identity_key` gives it
(trimmed, NFKC, case-folded, invisible characters removed, look-alikes mapped to their
Unicode prototypes), stored at intake beside the id as the agent sent it. Claims
compare it in SQL; decisions compare it again.

Existing deferrals get their key computed here, in batches.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from review.identity import identity_key

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BATCH = 1000


def upgrade() -> None:
    # A plain ADD COLUMN (no batch copy): SQLite keeps the table and its triggers.
    op.add_column(
        "deferrals",
        sa.Column("principal_key", sa.String(400), nullable=False, server_default=""),
    )
    deferrals = sa.table(
        "deferrals",
        sa.column("id", sa.String()),
        sa.column("principal_id", sa.String()),
        sa.column("principal_key", sa.String()),
    )
    bind = op.get_bind()
    after = ""
    while True:
        rows = bind.execute(
            sa.select(deferrals.c.id, deferrals.c.principal_id)
            .where(deferrals.c.id > after)
            .order_by(deferrals.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        for deferral_id, principal_id in rows:
            bind.execute(
                deferrals.update()
                .where(deferrals.c.id == deferral_id)
                .values(principal_key=identity_key(principal_id))
            )
        after = rows[-1][0]


def downgrade() -> None:
    op.drop_column("deferrals", "principal_key")
