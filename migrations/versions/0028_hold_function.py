"""PostgreSQL: a reviewer's decision held for its undo window in one call, `countersign_hold`.

With COUNTERSIGN_UNDO_SECONDS > 0 (the default) a decision is held as a row of
`pending_decisions` until its window closes (review/reviewing/undo.py). The common one
(one approval ends it, no canary, not an edit) is prepared before its write
(review/reviewing/prepared_holds.py: read and checked, the time in view assessed); on
SQLite its two writes then run under the writer lock, on PostgreSQL this function writes
them in one autocommit statement, as countersign_decide (0027) does for a decision taken
at once: no round trip holds its locks, and no BEGIN and COMMIT travel. In the order the
full path (review/reviewing/decisions.py) locks in:

1. the deferral's shard of the audit chain (review/audit/chain.py lock_chain), then the
   reviewer's decision lock (decision_checks.py one_reviewer_at_a_time, key space
   0x64656369, "deci");
2. the held row, copied from the deferral's only while it is as the decision was
   prepared for (prepared_holds.py HOLD_ON_CLAIM: in review, held by the reviewer under
   a live lease since the same claim, not expired, one approval ends it, no canary); a
   row held already on the deferral (another tab) is its primary key. No row: nothing is
   written, and the answer says why (`held_already`, `changed`) for the caller to take
   the full path, which reads again and tells the reviewer what won;
3. the lease renewal on the reviewer's batch (renew_lease's UPDATE), counting the items
   left (live lease, no decision held for undo).

A held decision writes no audit event: nothing is decided until it takes effect
(PROTOCOL.md section 16).

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None

HOLD_FUNCTION = """
CREATE OR REPLACE FUNCTION countersign_hold(p_holder integer, p_shard integer,
                                            p_deferral text, p_claimed_at timestamptz,
                                            p_now timestamptz, p_lease_until timestamptz,
                                            p_username text, p_verdict text, p_reason text,
                                            p_seen_ms integer, p_effective_at timestamptz)
RETURNS TABLE (outcome text, items_left integer) AS $$
BEGIN
  -- The chain's shard lock, then the reviewer's: the full path's order.
  PERFORM 1 FROM audit_head h WHERE h.shard = p_shard FOR UPDATE;
  PERFORM pg_advisory_xact_lock(1684366185, p_holder);
  INSERT INTO pending_decisions (deferral_id, user_id, username, verdict, reason, seen_ms,
                                 edited_args, decided_at, effective_at)
  SELECT x.id, x.claimed_by, p_username, p_verdict, p_reason, p_seen_ms,
         'null'::jsonb, p_now, p_effective_at  -- edited_args as the ORM stores None
    FROM deferrals x
   WHERE x.id = p_deferral
     AND x.status = 'in_review'
     AND x.claimed_by = p_holder
     AND x.claimed_at = p_claimed_at
     AND x.lease_expires_at >= p_now
     AND x.expires_at > p_now
     AND x.required_approvals <= 1
     AND coalesce(x.canary, '') = ''
  ON CONFLICT (deferral_id) DO NOTHING;
  IF NOT FOUND THEN
    IF EXISTS (SELECT 1 FROM pending_decisions p WHERE p.deferral_id = p_deferral) THEN
      RETURN QUERY SELECT 'held_already', NULL::integer;
    ELSE
      RETURN QUERY SELECT 'changed', NULL::integer;
    END IF;
    RETURN;
  END IF;
  -- The batch, this item among it (now held for undo, so not counted as left).
  RETURN QUERY
  WITH renewed AS (
    UPDATE deferrals SET lease_expires_at = p_lease_until
     WHERE deferrals.claimed_by = p_holder AND deferrals.status = 'in_review'
       AND deferrals.lease_expires_at >= p_now
    RETURNING deferrals.id
  )
  SELECT 'held', count(*)::integer FROM renewed
   WHERE NOT EXISTS (SELECT 1 FROM pending_decisions p WHERE p.deferral_id = renewed.id);
END $$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(HOLD_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DROP FUNCTION IF EXISTS countersign_hold(integer, integer, text, timestamptz,"
            " timestamptz, timestamptz, text, text, text, integer, timestamptz)"
        )
