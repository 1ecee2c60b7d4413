"""PostgreSQL: a held decision taking effect in one call, `countersign_take_effect`.

When a held decision's undo window closes, the worker's job, its tick or a read that
meets it due takes it into effect (review/reviewing/taking_effect.py). The common one
(a verdict, not an edit; one approval ends it; no canary) is prepared before its write
(review/reviewing/prepared_effects.py: the held row, its reviewer and the deferral read
and checked, the receipt signed, the event hashed up to its link, the callback built as
of now); on SQLite its writes then run under the writer lock, on PostgreSQL this
function writes them in one autocommit statement, as countersign_decide (0027) does for
a decision taken at once. In order:

1. the deferral's shard of the audit chain (review/audit/chain.py lock_chain; the
   event goes there), then the deferral's row (FOR UPDATE), which must still be as the
   decision was prepared for: in review, claimed by the reviewer who decided (a claim
   with a held decision does not lapse, so no lease is asked), the action, quorum, risk
   level and policy unchanged, the agent taking callbacks as it did, and the ending
   owing nothing besides the callback (no AAP instance, no notification). Otherwise
   nothing is written, and the answer says why (`gone`, `ended`, `not_held`,
   `changed`, `owes_more`);
2. the held row deleted as it was read (same reviewer, verdict and decision time, due):
   not undone, not taken by another worker or read, not decided again. No row:
   `taken`, nothing written;
3. the ending (end_deferral's conditional UPDATE on the claim, ENDING_ON_CLAIM), the
   approval's row, the callback's outbox row, the event appended to its shard
   (countersign_append, 0025).

The caller takes the full path on any answer but `decided`: it reads again under the
chain's locks and drops or decides the held decision. An approval row that exists
already fails the statement on its primary key: nothing is written either.

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None

TAKE_EFFECT_FUNCTION = """
CREATE OR REPLACE FUNCTION countersign_take_effect(p_holder integer, p_now timestamptz,
                                                   p_verdict text, p_decided_at timestamptz,
                                                   p_has_callback boolean, p_ending jsonb,
                                                   p_approval jsonb, p_outbox jsonb,
                                                   p_events jsonb)
RETURNS text AS $$
DECLARE
  e deferrals;
  d record;
BEGIN
  e := jsonb_populate_record(NULL::deferrals, p_ending);
  PERFORM 1 FROM audit_head h WHERE h.shard = (p_events->0->>'shard')::integer FOR UPDATE;
  SELECT x.status, x.claimed_by, x.action_digest, x.required_approvals, x.risk_level,
         x.policy_version, x.agent_id
    INTO d FROM deferrals x WHERE x.id = e.id FOR UPDATE;
  IF NOT FOUND THEN
    RETURN 'gone';
  ELSIF d.status NOT IN ('pending', 'in_review') THEN
    RETURN 'ended';
  ELSIF d.status <> 'in_review' OR d.claimed_by IS DISTINCT FROM p_holder THEN
    RETURN 'not_held';
  ELSIF (d.action_digest, d.required_approvals, d.risk_level, d.policy_version)
        IS DISTINCT FROM (e.action_digest, e.required_approvals, e.risk_level,
                          e.policy_version)
        OR NOT EXISTS (SELECT 1 FROM agents a WHERE a.id = d.agent_id
                       AND (coalesce(a.callback_url, '') <> '') = p_has_callback) THEN
    RETURN 'changed';
  ELSIF EXISTS (SELECT 1 FROM aap_requests r JOIN aap_instances i ON i.id = r.instance_id
                WHERE r.deferral_id = e.id AND i.delivery_url IS NOT NULL)
        OR EXISTS (SELECT 1 FROM notification_items n WHERE n.deferral_id = e.id) THEN
    RETURN 'owes_more';
  END IF;
  DELETE FROM pending_decisions p
   WHERE p.deferral_id = e.id AND p.user_id = p_holder AND p.verdict = p_verdict
     AND p.decided_at = p_decided_at AND p.effective_at <= p_now;
  IF NOT FOUND THEN
    RETURN 'taken';
  END IF;
  -- Conditional still, on the row locked above: it cannot miss, and if it did the
  -- exception would undo the DELETE (the statement is its own transaction).
  UPDATE deferrals SET status = e.status, decided_at = e.decided_at,
         decision_reason = e.decision_reason, decided_by = e.decided_by,
         valid_until = e.valid_until, receipt = e.receipt,
         claimed_by = NULL, lease_expires_at = NULL
   WHERE deferrals.id = e.id
     AND deferrals.status = 'in_review'
     AND deferrals.claimed_by = p_holder
     AND deferrals.action_digest = e.action_digest
     AND deferrals.required_approvals = e.required_approvals
     AND deferrals.risk_level = e.risk_level
     AND deferrals.policy_version = e.policy_version;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'countersign_take_effect: % not as locked', e.id;
  END IF;
  IF p_approval IS NOT NULL THEN
    INSERT INTO approvals SELECT * FROM jsonb_populate_record(NULL::approvals, p_approval);
  END IF;
  IF p_outbox IS NOT NULL THEN
    INSERT INTO outbox_events
      SELECT * FROM jsonb_populate_record(NULL::outbox_events, p_outbox);
  END IF;
  PERFORM * FROM countersign_append(p_events);
  RETURN 'decided';
END $$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(TAKE_EFFECT_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DROP FUNCTION IF EXISTS countersign_take_effect(integer, timestamptz, text,"
            " timestamptz, boolean, jsonb, jsonb, jsonb, jsonb)"
        )
