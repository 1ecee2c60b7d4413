"""Foundation and intake: users, agents, secrets, deferrals, the audit chain.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from review.models import JSONType, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("email", sa.String(254)),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "agents",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("slug", sa.String(63), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("callback_url", sa.String(2000)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("state_changed_at", UTCDateTime(), nullable=False),
        sa.Column("state_changed_by", sa.String(200), nullable=False),
        sa.Column("state_reason", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "agent_owners",
        sa.Column("agent_id", sa.Integer(), sa.ForeignKey("agents.id"), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), primary_key=True),
    )
    op.create_table(
        "agent_secrets",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("agent_id", sa.Integer(), sa.ForeignKey("agents.id"), nullable=False),
        sa.Column("ciphertext", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(32), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime()),
    )
    # Secrets of one agent, read on every signed request.
    op.create_index("ix_agent_secrets_agent_id", "agent_secrets", ["agent_id"])
    op.create_table(
        "deferrals",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("agent_id", sa.Integer(), sa.ForeignKey("agents.id"), nullable=False),
        sa.Column("webhook_id", sa.String(255), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("tool", sa.String(200), nullable=False),
        sa.Column("action", JSONType, nullable=False),
        sa.Column("action_digest", sa.String(71), nullable=False),
        sa.Column("summary", sa.String(500), nullable=False),
        sa.Column("principal_id", sa.String(200), nullable=False),
        sa.Column("principal_name", sa.String(200)),
        sa.Column("rationale", sa.Text()),
        sa.Column("state", JSONType, nullable=False),
        sa.Column("diff", JSONType, nullable=False),
        sa.Column("resource_type", sa.String(200)),
        sa.Column("resource_id", sa.String(200)),
        sa.Column("labels", JSONType, nullable=False),
        sa.Column("trace_id", sa.String(200)),
        sa.Column("trace_url", sa.String(2000)),
        sa.Column("risk_score", sa.Integer(), nullable=False),
        sa.Column("risk_level", sa.String(16), nullable=False),
        sa.Column("risk_factors", JSONType, nullable=False),
        sa.Column("agent_risk", JSONType),
        sa.Column("policy_version", sa.String(71), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("rank", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("decided_at", UTCDateTime()),
        sa.Column("decision_reason", sa.Text()),
        sa.Column("decided_by", JSONType, nullable=False),
        sa.Column("valid_until", UTCDateTime()),
        # Idempotency: one deferral per (agent, webhook-id); a racing duplicate fails here.
        sa.UniqueConstraint("agent_id", "webhook_id", name="uq_deferrals_agent_webhook_id"),
    )
    # The queue's "top N pending": WHERE status = 'pending' ORDER BY rank DESC LIMIT N.
    op.create_index("ix_deferrals_status_rank", "deferrals", ["status", "rank"])
    # The per-agent pending cap: COUNT(*) WHERE agent_id = ? AND status IN (...).
    op.create_index("ix_deferrals_agent_status", "deferrals", ["agent_id", "status"])
    # The expiry sweep: WHERE status IN (...) AND expires_at <= now.
    op.create_index("ix_deferrals_status_expires", "deferrals", ["status", "expires_at"])

    op.create_table(
        "audit_events",
        sa.Column("seq", BIGINT, primary_key=True, autoincrement=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor_kind", sa.String(16), nullable=False),
        sa.Column("actor_id", sa.String(200), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("agent", sa.String(63)),
        sa.Column("deferral_id", sa.String(40)),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False, unique=True),
    )
    # A deferral's evidence chain: WHERE deferral_id = ? ORDER BY seq.
    op.create_index("ix_audit_events_deferral_seq", "audit_events", ["deferral_id", "seq"])
    # An agent's history: WHERE agent = ? ORDER BY seq.
    op.create_index("ix_audit_events_agent_seq", "audit_events", ["agent", "seq"])
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": "0" * 64}])


def downgrade() -> None:
    for table in (
        "audit_head",
        "audit_events",
        "deferrals",
        "agent_secrets",
        "agent_owners",
        "agents",
        "users",
    ):
        op.drop_table(table)
