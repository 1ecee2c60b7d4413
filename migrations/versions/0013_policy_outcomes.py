"""Policy outcomes: a rule may decide a deferral at intake (PROTOCOL.md section 10).

- `deferrals.policy_outcome`: what the policy decided, `{"outcome": "allow"|"ask"|"deny",
  "rule": <the rule that set it, or null>}` (the resource's `risk.outcome` and
  `risk.rule`). Deferrals stored before this upgrade were all asked: `ask`, no rule.
- PostgreSQL's intake function (0008) learns to write a callback. A deferral that policy
  allows or denies is inserted already approved or rejected, its decision event chained
  after `received` and `evaluated`; its `deferral.decided` callback must commit with it,
  so the function takes the outbox row as a fifth argument (NULL when there is none) and
  inserts it when the agent has a callback URL. The undecided count's triggers (0007)
  count an insert by its status, so a decided one is not counted. The function is
  otherwise 0008's: dropped and created again, since its arguments change.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

from review.models import JSONType

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

ASKED = '{"outcome": "ask", "rule": null}'

INTAKE_FUNCTION = """
CREATE OR REPLACE FUNCTION countersign_intake(p_agent integer, p_cap integer,
                                              p_deferral jsonb, p_events jsonb,
                                              p_outbox jsonb)
RETURNS TABLE (outcome text, slug text, reason text, undecided integer) AS $$
DECLARE
  head_seq bigint;
  head_hash text;
  agent record;
  event jsonb;
  event_hash text;
BEGIN
  SELECT h.seq, h.hash INTO head_seq, head_hash FROM audit_head h WHERE h.id = 1 FOR UPDATE;
  SELECT a.slug, a.state, a.state_reason, a.undecided, a.callback_url INTO agent
    FROM agents a WHERE a.id = p_agent FOR NO KEY UPDATE;
  IF agent.state = 'killed' THEN
    RETURN QUERY SELECT 'killed', agent.slug::text, agent.state_reason, agent.undecided;
    RETURN;
  END IF;
  IF p_cap > 0 AND agent.undecided >= p_cap THEN
    RETURN QUERY SELECT 'full', agent.slug::text, agent.state_reason, agent.undecided;
    RETURN;
  END IF;
  INSERT INTO deferrals SELECT * FROM jsonb_populate_record(NULL::deferrals, p_deferral);
  FOR event IN SELECT value FROM jsonb_array_elements(p_events) LOOP
    head_seq := head_seq + 1;
    event_hash := encode(sha256(convert_to(
      (event->>'prefix') || head_hash || '","seq":' || head_seq::text || '}', 'UTF8')), 'hex');
    INSERT INTO audit_events (seq, at, actor_kind, actor_id, event_type, agent, deferral_id,
                              payload, prev_hash, hash)
    VALUES (head_seq, (event->>'at')::timestamptz, event->>'actor_kind', event->>'actor_id',
            event->>'event_type', event->>'agent', event->>'deferral_id', event->>'payload',
            head_hash, event_hash);
    head_hash := event_hash;
  END LOOP;
  UPDATE audit_head SET seq = head_seq, hash = head_hash WHERE id = 1;
  IF p_outbox IS NOT NULL AND coalesce(agent.callback_url, '') <> '' THEN
    INSERT INTO outbox_events
      SELECT * FROM jsonb_populate_record(NULL::outbox_events, p_outbox);
  END IF;
  RETURN QUERY SELECT 'created', agent.slug::text, agent.state_reason,
    agent.undecided + (CASE WHEN p_deferral->>'status' IN ('pending', 'in_review')
                            THEN 1 ELSE 0 END);
END $$ LANGUAGE plpgsql
"""

OLD_SIGNATURE = "countersign_intake(integer, integer, jsonb, jsonb)"
NEW_SIGNATURE = "countersign_intake(integer, integer, jsonb, jsonb, jsonb)"


def upgrade() -> None:
    op.add_column(
        "deferrals",
        sa.Column("policy_outcome", JSONType, nullable=False, server_default=ASKED),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP FUNCTION IF EXISTS {OLD_SIGNATURE}")
        op.execute(INTAKE_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP FUNCTION IF EXISTS {NEW_SIGNATURE}")
        op.execute(_revision_0008().INTAKE_FUNCTION)
    op.drop_column("deferrals", "policy_outcome")


def _revision_0008():
    """Migration 0008's module (its file name is no Python identifier)."""
    path = Path(__file__).with_name("0008_intake_function.py")
    spec = importlib.util.spec_from_file_location("countersign_0008", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
