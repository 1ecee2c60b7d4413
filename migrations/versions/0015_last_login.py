"""When each user last logged in, for the admins' users page.

`users.last_login_at` is set in the transaction that audits `login.succeeded`. Users
who logged in before this upgrade get the time of their newest `login.succeeded` event
(the audit log already knew it); the others have none until they log in.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from review.models import UTCDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("last_login_at", UTCDateTime(), nullable=True))
    op.execute(
        "UPDATE users SET last_login_at = (SELECT max(e.at) FROM audit_events e"
        " WHERE e.event_type = 'login.succeeded' AND e.actor_id = users.username)"
    )


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("last_login_at")
