"""The AAP door: bearer tokens, registered instances, and each AAP request's submission.

- `aap_tokens`: bearer tokens, stored as the SHA-256 of the token (they are 32 random
  bytes, so a plain hash is as good as a slow one). A token without `instance_id` is the
  agent's own (`agents aap-token SLUG`); one with it is the credential an instance was
  given when it registered. `expires_at` is set when a newer token replaces it.
- `aap_instances`: instances registered through `POST /aap/v1/instances`, with their
  verified webhook receiver (its signing secret sealed like agent secrets) and what the
  registration answered (sealed too: it holds the credential), for a retry to get again.
- `aap_requests`: one row per deferral that came in through the door: the submission
  exactly as sent (the AAP resource echoes it), its hash (tells a retry from a
  conflict), and the single-use consumption of an approval.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from review.models import UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "aap_instances",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("agent_id", sa.Integer(), sa.ForeignKey("agents.id"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("delivery_url", sa.String(2000)),
        sa.Column("registration_id", sa.String(36)),
        sa.Column("signing_secret", sa.Text()),
        sa.Column("provision_key", sa.String(255), nullable=False),
        sa.Column("provision_hash", sa.String(64), nullable=False),
        sa.Column("provisioned", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        # A registration retried with its Idempotency-Key finds the instance it made.
        sa.UniqueConstraint("agent_id", "provision_key", name="uq_aap_instances_agent_key"),
    )
    op.create_table(
        "aap_tokens",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("agent_id", sa.Integer(), sa.ForeignKey("agents.id"), nullable=False),
        sa.Column("instance_id", sa.String(36), sa.ForeignKey("aap_instances.id")),
        # Every AAP request: WHERE token_hash = ? (unique, so indexed).
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime()),
    )
    # Issuing a new agent token retires the agent's current ones: WHERE agent_id = ?.
    op.create_index("ix_aap_tokens_agent", "aap_tokens", ["agent_id"])
    op.create_table(
        "aap_requests",
        sa.Column("deferral_id", sa.String(40), sa.ForeignKey("deferrals.id"), primary_key=True),
        sa.Column("instance_id", sa.String(36), sa.ForeignKey("aap_instances.id")),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("submission", sa.Text(), nullable=False),
        sa.Column("submission_hash", sa.String(64), nullable=False),
        sa.Column("action_digest", sa.String(71), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("consumed_at", UTCDateTime()),
        sa.Column("consume_key", sa.String(255)),
    )


def downgrade() -> None:
    op.drop_table("aap_requests")
    op.drop_index("ix_aap_tokens_agent", table_name="aap_tokens")
    op.drop_table("aap_tokens")
    op.drop_table("aap_instances")
