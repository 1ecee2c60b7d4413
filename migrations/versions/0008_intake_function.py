"""PostgreSQL: intake's write as one function call, so no round trip holds the chain lock.

`countersign_intake(agent, cap, deferral, events)` does, in the server, what intake
otherwise does in four round trips inside a transaction (review/intake/deferrals.py): lock the
audit chain's head and the agent's row, refuse a killed agent or one at its pending
cap, insert the deferral, chain its events and move the head. Called on its own (an
autocommit statement), it is its own transaction: the chain lock is held for the
function and its commit, never across the network.

The events come hashed up to their link: each carries `prefix`, its record's RFC 8785
JSON up to the previous hash (review/audit/hashing.py, `chain_prefix`); the function appends
the previous hash and the sequence number and takes the SHA-256, so the hash is the
one `event_hash` computes and `audit verify` checks. SQLite needs none of this (its
statements cost no round trip): nothing changes there.

Changing the tables safely: the deferral arrives as JSON made by `deferral_values`
(review/intake/deferral_rows.py) and becomes the row through `jsonb_populate_record`, which
follows the table's columns but gives a key it is not handed NULL, not the column's
default. So a column added to `deferrals` needs no change here, only a value in
`deferral_values` (its docstring lists the steps). An event field does need one: the
function reads each by name and lists the columns it inserts (review/audit/hashing.py,
"Adding an event field"). Never edit this migration to change the function: add one
that runs `CREATE OR REPLACE FUNCTION countersign_intake`. tests/test_intake_function.py
reads the function's source back from pg_proc and checks it against the tables.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-21
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

INTAKE_FUNCTION = """
CREATE FUNCTION countersign_intake(p_agent integer, p_cap integer, p_deferral jsonb,
                                   p_events jsonb)
RETURNS TABLE (outcome text, slug text, reason text, undecided integer) AS $$
DECLARE
  head_seq bigint;
  head_hash text;
  agent record;
  event jsonb;
  event_hash text;
BEGIN
  SELECT h.seq, h.hash INTO head_seq, head_hash FROM audit_head h WHERE h.id = 1 FOR UPDATE;
  SELECT a.slug, a.state, a.state_reason, a.undecided INTO agent
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
  RETURN QUERY SELECT 'created', agent.slug::text, agent.state_reason, agent.undecided + 1;
END $$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(INTAKE_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS countersign_intake(integer, integer, jsonb, jsonb)")
