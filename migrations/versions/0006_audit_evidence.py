"""The audit log as evidence: append-only at the database, signed checkpoints, indexes
for the /audit page.

Triggers refuse UPDATE and DELETE on audit_events and audit_checkpoints (and TRUNCATE
on PostgreSQL), so a change needs someone who can drop triggers; `audit verify` and the
signed checkpoints catch what such a person does.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from review.models import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

APPEND_ONLY = ("audit_events", "audit_checkpoints")


def upgrade() -> None:
    op.create_table(
        "audit_checkpoints",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("head_hash", sa.String(64), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
    )
    op.create_index("ix_audit_checkpoints_seq", "audit_checkpoints", ["seq"])
    # The /audit page's filters, each in sequence order (keyset pagination).
    op.create_index("ix_audit_events_actor_seq", "audit_events", ["actor_id", "seq"])
    op.create_index("ix_audit_events_type_seq", "audit_events", ["event_type", "seq"])
    op.create_index("ix_audit_events_at", "audit_events", ["at"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION countersign_append_only() RETURNS trigger AS $$
            BEGIN
              RAISE EXCEPTION '% on % refused: the audit log is append-only',
                TG_OP, TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
            END $$ LANGUAGE plpgsql
            """
        )
        for table in APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION countersign_append_only()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION countersign_append_only()"
            )
    else:
        for table in APPEND_ONLY:
            for action in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{action} on {table} refused: "
                    "the audit log is append-only'); END"
                )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute("DROP FUNCTION IF EXISTS countersign_append_only()")
    else:
        for table in APPEND_ONLY:
            for action in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{action}")
    op.drop_index("ix_audit_events_at", table_name="audit_events")
    op.drop_index("ix_audit_events_type_seq", table_name="audit_events")
    op.drop_index("ix_audit_events_actor_seq", table_name="audit_events")
    op.drop_table("audit_checkpoints")
