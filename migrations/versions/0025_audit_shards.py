"""Chain shards: the audit log as N hash chains, each with its own head and lock.

- `audit_head` becomes one row per shard: `id` is renamed `shard`, and the single
  chain's head (id 1) becomes shard 0's. Its events stay as they are: shard 0, places
  1..n (their `seq`), hashed as before (no `shard`, `shard_seq` in the record), so
  every hash and every checkpoint taken before still verifies.
- `audit_events.shard` and `.shard_seq` (None for the events before this upgrade);
  a unique index on both, so a fork within a shard is refused by the database.
- `audit_checkpoints.heads`: the shard heads a checkpoint commits to (its `head_hash`
  is then their Merkle root; review/audit/checkpoints.py).
- `audit_epochs`: the shard count and the first global `seq` it applies from. Epoch 0
  is the single chain (1 shard); when events exist and COUNTERSIGN_AUDIT_SHARDS asks
  for more, epoch 1 begins with the next event. An empty database starts at that count.
- PostgreSQL: the sequence `audit_event_seq` gives the global `seq` (it may skip a
  number when a transaction rolls back; each shard's `shard_seq` has no gaps), the
  function `countersign_append(events)` chains events in the server under their shards'
  locks, and `countersign_intake` (0013) uses it, locking only its deferral's shard.

Revision ID: 0025
Revises: 0024
Create Date: 2026-11-30
"""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from alembic import op

from review.models import UTCDateTime

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

GENESIS = "0" * 64

APPEND_FUNCTION = """
CREATE OR REPLACE FUNCTION countersign_append(p_events jsonb)
RETURNS TABLE (out_seq bigint, out_shard_seq bigint, out_prev_hash text, out_hash text) AS $$
DECLARE
  event jsonb;
  v_shard integer;
  v_place bigint;
  v_prev text;
  v_seq bigint;
  v_hash text;
BEGIN
  -- Every shard this append touches, locked in ascending order (chain.py lock_chain).
  PERFORM 1 FROM audit_head h
    WHERE h.shard IN (SELECT DISTINCT (e.value->>'shard')::integer
                      FROM jsonb_array_elements(p_events) e)
    ORDER BY h.shard FOR UPDATE;
  FOR event IN SELECT value FROM jsonb_array_elements(p_events) LOOP
    v_shard := (event->>'shard')::integer;
    SELECT h.seq, h.hash INTO v_place, v_prev FROM audit_head h WHERE h.shard = v_shard;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'audit shard % has no head row', v_shard;
    END IF;
    v_place := v_place + 1;
    v_seq := nextval('audit_event_seq');  -- under the shard's lock: seq grows along it
    v_hash := encode(sha256(convert_to(
      (event->>'prefix') || v_prev || '","seq":' || v_seq::text || ',"shard":'
        || v_shard::text || ',"shard_seq":' || v_place::text || '}', 'UTF8')), 'hex');
    INSERT INTO audit_events (seq, at, actor_kind, actor_id, event_type, agent, deferral_id,
                              payload, prev_hash, hash, shard, shard_seq)
    VALUES (v_seq, (event->>'at')::timestamptz, event->>'actor_kind', event->>'actor_id',
            event->>'event_type', event->>'agent', event->>'deferral_id', event->>'payload',
            v_prev, v_hash, v_shard, v_place);
    UPDATE audit_head h SET seq = v_place, hash = v_hash WHERE h.shard = v_shard;
    out_seq := v_seq;
    out_shard_seq := v_place;
    out_prev_hash := v_prev;
    out_hash := v_hash;
    RETURN NEXT;
  END LOOP;
END $$ LANGUAGE plpgsql
"""

INTAKE_FUNCTION = """
CREATE OR REPLACE FUNCTION countersign_intake(p_agent integer, p_cap integer,
                                              p_deferral jsonb, p_events jsonb,
                                              p_outbox jsonb)
RETURNS TABLE (outcome text, slug text, reason text, undecided integer) AS $$
DECLARE
  agent record;
BEGIN
  -- The deferral's shard first, then the agent (the order chained writes lock in).
  PERFORM 1 FROM audit_head h WHERE h.shard = (p_events->0->>'shard')::integer FOR UPDATE;
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
  PERFORM * FROM countersign_append(p_events);
  IF p_outbox IS NOT NULL AND coalesce(agent.callback_url, '') <> '' THEN
    INSERT INTO outbox_events
      SELECT * FROM jsonb_populate_record(NULL::outbox_events, p_outbox);
  END IF;
  RETURN QUERY SELECT 'created', agent.slug::text, agent.state_reason,
    agent.undecided + (CASE WHEN p_deferral->>'status' IN ('pending', 'in_review')
                            THEN 1 ELSE 0 END);
END $$ LANGUAGE plpgsql
"""


def _wanted_shards() -> int:
    """COUNTERSIGN_AUDIT_SHARDS (or config/defaults.toml's), as the app reads it."""
    from review.settings import load_settings  # noqa: PLC0415

    return load_settings().audit_shards


def upgrade() -> None:
    bind = op.get_bind()
    op.execute("ALTER TABLE audit_head RENAME COLUMN id TO shard")
    op.execute("UPDATE audit_head SET shard = 0 WHERE shard = 1")
    op.add_column(
        "audit_events", sa.Column("shard", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column("audit_events", sa.Column("shard_seq", sa.BigInteger(), nullable=True))
    # One event per place in each shard's chain.
    op.create_index(
        "ix_audit_events_shard_seq", "audit_events", ["shard", "shard_seq"], unique=True
    )
    op.add_column("audit_checkpoints", sa.Column("heads", sa.Text(), nullable=True))
    epochs = op.create_table(
        "audit_epochs",
        sa.Column("epoch", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("shards", sa.Integer(), nullable=False),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
    )
    last_seq = bind.execute(sa.text("SELECT coalesce(max(seq), 0) FROM audit_events")).scalar()
    wanted = _wanted_shards()
    now = datetime.now(UTC)
    if last_seq:
        rows = [{"epoch": 0, "shards": 1, "first_seq": 1, "at": now}]
        if wanted > 1:
            rows.append({"epoch": 1, "shards": wanted, "first_seq": last_seq + 1, "at": now})
    else:
        rows = [{"epoch": 0, "shards": wanted, "first_seq": 1, "at": now}]
    op.bulk_insert(epochs, rows)
    heads = sa.table("audit_head", sa.column("shard"), sa.column("seq"), sa.column("hash"))
    op.bulk_insert(heads, [{"shard": s, "seq": 0, "hash": GENESIS} for s in range(1, wanted)])
    if bind.dialect.name == "postgresql":
        op.execute("CREATE SEQUENCE audit_event_seq AS bigint")
        if last_seq:
            op.execute(f"SELECT setval('audit_event_seq', {int(last_seq)})")
        op.execute(APPEND_FUNCTION)
        op.execute(INTAKE_FUNCTION)


def downgrade() -> None:
    bind = op.get_bind()
    sharded = bind.execute(
        sa.text("SELECT count(*) FROM audit_events WHERE shard_seq IS NOT NULL")
    ).scalar()
    if sharded:
        raise RuntimeError(
            f"{sharded} audit events were chained in shards: one chain cannot hold them "
            "(restore a backup taken before migration 0025 instead)"
        )
    if bind.dialect.name == "postgresql":
        op.execute(_revision_0013().INTAKE_FUNCTION)
        op.execute("DROP FUNCTION IF EXISTS countersign_append(jsonb)")
        op.execute("DROP SEQUENCE IF EXISTS audit_event_seq")
    op.drop_table("audit_epochs")
    op.execute("ALTER TABLE audit_checkpoints DROP COLUMN heads")
    op.drop_index("ix_audit_events_shard_seq", table_name="audit_events")
    op.execute("ALTER TABLE audit_events DROP COLUMN shard_seq")
    op.execute("ALTER TABLE audit_events DROP COLUMN shard")
    op.execute("DELETE FROM audit_head WHERE shard <> 0")
    op.execute("UPDATE audit_head SET shard = 1 WHERE shard = 0")
    op.execute("ALTER TABLE audit_head RENAME COLUMN shard TO id")


def _revision_0013():
    """Migration 0013's module (its file name is no Python identifier)."""
    path = Path(__file__).with_name("0013_policy_outcomes.py")
    spec = importlib.util.spec_from_file_location("countersign_0013", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
