"""PostgreSQL: a reviewer's common decision in one call, `countersign_decide`.

The decision prepared before its write (review/reviewing/prepared_decisions.py: read,
checked, receipt signed, event hashed up to its link) is written by this function in
one autocommit statement (review/reviewing/decision_call.py), as intake is by
countersign_intake (0008, 0013, 0025): no round trip holds its locks, and no BEGIN and
COMMIT travel. In the order the full path (review/reviewing/decisions.py) locks in:

1. the deferral's shard of the audit chain (review/audit/chain.py lock_chain), then the
   reviewer's decision lock (decision_checks.py one_reviewer_at_a_time: its key space
   0x64656369, "deci", is `_DECISIONS_OF` there);
2. the ending: end_deferral's conditional UPDATE for the holder under a live lease,
   which also requires what the decision was prepared for (action, quorum, risk level,
   policy: an edit changes them; whether the agent takes callbacks) and that the ending
   owes nothing besides the agent's callback (no AAP instance to tell, no notification
   told of it). No row: nothing is written, and the answer says why (`gone`, `ended`,
   `not_held`, `changed`, `owes_more`), for the caller to take the full path, which
   reads again and tells the reviewer what won;
3. the lease renewal on the rest of the reviewer's batch (renew_lease's UPDATE),
   counting the items left (live lease, no decision held for undo);
4. the approval's row, the callback's outbox row, the event appended to its shard
   (countersign_append, 0025: the hash the verifier recomputes).

Its first step writes nothing, so a lost race rolls nothing back; an approval row that
exists already (past the preparation's checks) fails the statement on its primary key,
and the caller takes the full path.

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None

DECIDE_FUNCTION = """
CREATE OR REPLACE FUNCTION countersign_decide(p_holder integer, p_now timestamptz,
                                              p_lease_until timestamptz,
                                              p_has_callback boolean, p_ending jsonb,
                                              p_approval jsonb, p_outbox jsonb,
                                              p_events jsonb)
RETURNS TABLE (outcome text, items_left integer) AS $$
DECLARE
  e deferrals;
  d record;
BEGIN
  e := jsonb_populate_record(NULL::deferrals, p_ending);
  -- The chain's shard lock, then the reviewer's: the full path's order.
  PERFORM 1 FROM audit_head h WHERE h.shard = (p_events->0->>'shard')::integer FOR UPDATE;
  PERFORM pg_advisory_xact_lock(1684366185, p_holder);
  UPDATE deferrals SET status = e.status, decided_at = e.decided_at,
         decision_reason = e.decision_reason, decided_by = e.decided_by,
         valid_until = e.valid_until, receipt = e.receipt,
         claimed_by = NULL, lease_expires_at = NULL
   WHERE deferrals.id = e.id
     AND deferrals.status = 'in_review'
     AND deferrals.claimed_by = p_holder
     AND deferrals.lease_expires_at >= p_now
     AND deferrals.action_digest = e.action_digest
     AND deferrals.required_approvals = e.required_approvals
     AND deferrals.risk_level = e.risk_level
     AND deferrals.policy_version = e.policy_version
     AND EXISTS (SELECT 1 FROM agents a WHERE a.id = deferrals.agent_id
                 AND (coalesce(a.callback_url, '') <> '') = p_has_callback)
     AND NOT EXISTS (SELECT 1 FROM aap_requests r
                     JOIN aap_instances i ON i.id = r.instance_id
                     WHERE r.deferral_id = deferrals.id AND i.delivery_url IS NOT NULL)
     AND NOT EXISTS (SELECT 1 FROM notification_items n WHERE n.deferral_id = deferrals.id);
  IF NOT FOUND THEN
    SELECT x.status, x.claimed_by, x.lease_expires_at, x.action_digest,
           x.required_approvals, x.risk_level, x.policy_version
      INTO d FROM deferrals x WHERE x.id = e.id;
    IF NOT FOUND THEN
      RETURN QUERY SELECT 'gone', NULL::integer;
    ELSIF d.status NOT IN ('pending', 'in_review') THEN
      RETURN QUERY SELECT 'ended', NULL::integer;
    ELSIF d.status <> 'in_review' OR d.claimed_by IS DISTINCT FROM p_holder
          OR d.lease_expires_at IS NULL OR d.lease_expires_at < p_now THEN
      RETURN QUERY SELECT 'not_held', NULL::integer;
    ELSIF (d.action_digest, d.required_approvals, d.risk_level, d.policy_version)
          IS DISTINCT FROM (e.action_digest, e.required_approvals, e.risk_level,
                            e.policy_version)
          OR NOT EXISTS (SELECT 1 FROM deferrals x JOIN agents a ON a.id = x.agent_id
                         WHERE x.id = e.id
                         AND (coalesce(a.callback_url, '') <> '') = p_has_callback) THEN
      RETURN QUERY SELECT 'changed', NULL::integer;
    ELSE
      RETURN QUERY SELECT 'owes_more', NULL::integer;
    END IF;
    RETURN;
  END IF;
  -- The rest of the batch: the ended item is no longer in review, so not among them.
  RETURN QUERY
  WITH renewed AS (
    UPDATE deferrals SET lease_expires_at = p_lease_until
     WHERE deferrals.claimed_by = p_holder AND deferrals.status = 'in_review'
       AND deferrals.lease_expires_at >= p_now
    RETURNING deferrals.id
  )
  SELECT 'decided', count(*)::integer FROM renewed
   WHERE NOT EXISTS (SELECT 1 FROM pending_decisions p WHERE p.deferral_id = renewed.id);
  IF p_approval IS NOT NULL THEN
    INSERT INTO approvals SELECT * FROM jsonb_populate_record(NULL::approvals, p_approval);
  END IF;
  IF p_outbox IS NOT NULL THEN
    INSERT INTO outbox_events
      SELECT * FROM jsonb_populate_record(NULL::outbox_events, p_outbox);
  END IF;
  PERFORM * FROM countersign_append(p_events);
END $$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(DECIDE_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DROP FUNCTION IF EXISTS countersign_decide(integer, timestamptz, timestamptz,"
            " boolean, jsonb, jsonb, jsonb, jsonb)"
        )
