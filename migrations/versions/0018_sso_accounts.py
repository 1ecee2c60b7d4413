"""Users who log in by OpenID Connect: the provider's issuer and subject they are linked to.

A user made by single sign-on is found again by (`sso_issuer`, `sso_subject`), the
provider's stable identity for them, not by their username; a local account (both
null) is never taken over by a login whose username claim happens to match it
(docs/SSO.md). At most one user per (issuer, subject).

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("sso_issuer", sa.String(255), nullable=True))
        batch.add_column(sa.Column("sso_subject", sa.String(255), nullable=True))
        batch.create_unique_constraint("uq_users_sso_identity", ["sso_issuer", "sso_subject"])


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("uq_users_sso_identity", type_="unique")
        batch.drop_column("sso_subject")
        batch.drop_column("sso_issuer")
