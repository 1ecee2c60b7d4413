"""Sessions that can be ended: a per-user session token.

Every browser session holds its user's `session_token` and is honoured only while it
still matches the row (review/web/auth.py, `load_user`). Logging out, a password change
and disabling the user give the row a new token, which ends every session of that user
at its next request, including a copied cookie.

Existing users get a fresh random token each, so sessions from before the upgrade end:
people log in again once. A row inserted without a token gets the empty string, which
no session matches.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("session_token", sa.String(64), nullable=False, server_default="")
        )
    users = sa.table("users", sa.column("id", sa.Integer()), sa.column("session_token"))
    bind = op.get_bind()
    for (user_id,) in bind.execute(sa.select(users.c.id)).all():
        bind.execute(
            users.update()
            .where(users.c.id == user_id)
            .values(session_token=secrets.token_urlsafe(32))
        )


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("session_token")
