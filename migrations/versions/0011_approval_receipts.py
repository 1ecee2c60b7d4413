"""Approval receipts: every approval keeps the signed receipt it was given.

`deferrals.receipt` holds the compact JWS (PROTOCOL.md section 13) that the resource's
`decision.receipt` and the `deferral.decided` callback carry. Only approvals have one;
approvals made before this upgrade stay without (NULL), since a receipt is signed at
the moment of approval and they are not re-signed.

Intake's PostgreSQL function (0008) inserts the whole row from JSON and needs no change:
review/intake/deferrals.py hands it `receipt: null` with the other undecided fields.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN (no batch copy): SQLite keeps the table and its triggers.
    op.add_column("deferrals", sa.Column("receipt", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("deferrals", "receipt")
