"""A new deferral's row and its intake events, as intake and canary seeding build them.

`deferral_values` is every column of the row (both databases' paths insert exactly
that dict); `intake_events` the `received` and `evaluated` audit events that go with
it. Pure computation from a Prepared request: intake builds them before it takes the
chain's lock (review/intake/deferrals.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from review.identity import identity_key
from review.ids import new_deferral_id
from review.intake import priority
from review.intake.preparation import Prepared, route_of
from review.intake.principals import verified_values
from review.models import undecided_fields
from review.services import Services


def deferral_values(
    svc: Services, agent_id: int, webhook_id: str, prepared: Prepared, now: datetime
) -> dict[str, Any]:
    """Every column of the new deferral's row: both paths insert exactly this dict.

    Adding a column to `deferrals` means changing, together:

    1. review/models.py `Deferral` (and `undecided_fields` there if it is a decision or
       review field that starts empty), and a new migration that adds the column.
    2. This dict. SQLite's insert refuses a row without the column (review/db.py
       `DriverStatements`), but PostgreSQL's intake function (migration 0008) fills the
       row with `jsonb_populate_record`, which gives a missing key NULL, not the
       column's default: an error on a NOT NULL column, silence on a nullable one. The
       function itself needs no change.
    3. `rows_json` (review/audit/chain.py) if the value is not a dict, list, str, int,
       float, bool, None or aware datetime: it must become JSON that PostgreSQL reads as
       the column's type.
    4. What shows it: review/resources.py renders a new deferral straight from this
       dict (`Received.deferral`), and PROTOCOL.md section 5 if agents see it; the
       `received` event's payload (`intake_events`) if the audit log should keep it.
    5. tests/test_intake_function.py: a value in `EVERY_FIELD` if the request may omit
       it, so its read-back can tell a dropped value from a NULL one.
    """
    s = svc.settings
    body, ev = prepared.body, prepared.evaluation
    routed = prepared.routed or route_of(svc, ev)
    expires_at = now + timedelta(seconds=body.get("expires_in", s.default_expires_in))
    rank = priority.rank(
        ev.score,
        now,
        expires_at,
        default_expires_in=s.default_expires_in,
        age_seconds_per_point=s.priority_age_seconds_per_point,
        expiry_seconds_per_point=s.priority_expiry_seconds_per_point,
    )
    at_intake = priority.priority_at(
        now,
        rank,
        age_seconds_per_point=s.priority_age_seconds_per_point,
        expiry_seconds_per_point=s.priority_expiry_seconds_per_point,
    )
    return {
        "id": new_deferral_id(),
        "agent_id": agent_id,
        "webhook_id": webhook_id,
        "request_hash": prepared.request_hash,
        "status": "pending",
        "tool": body["action"]["tool"],
        "action": body["action"],
        "action_digest": prepared.digest,
        "summary": body["summary"],
        "principal_id": body["on_behalf_of"]["id"],
        # Separation of duties compares the verified identity when there is one.
        "principal_key": identity_key(prepared.principal.identity),
        "principal_name": body["on_behalf_of"].get("display_name"),
        "principal_verified": verified_values(prepared.principal),
        "intent": body.get("intent"),
        "rationale": body.get("rationale"),
        "state": {k: body[k] for k in ("before", "after") if k in body},
        "diff": prepared.diff,
        "resource_type": body.get("resource", {}).get("type"),
        "resource_id": body.get("resource", {}).get("id"),
        "labels": body.get("labels", {}),
        "trace_id": body.get("trace", {}).get("id"),
        "trace_url": body.get("trace", {}).get("url"),
        "risk_score": ev.score,
        "risk_level": ev.level,
        "risk_factors": ev.factors,
        "agent_risk": body.get("risk"),
        "policy_version": ev.policy_version,
        "policy_outcome": {"outcome": ev.outcome, "rule": ev.rule},
        "route_group": routed.group,
        "required_approvals": routed.required_approvals,
        "priority": priority.clamp_priority(at_intake),
        "rank": rank,
        "created_at": now,
        "expires_at": expires_at,
        "canary": None,  # an agent's request is never a canary (review/canaries/seeding.py)
        **undecided_fields(),
    }


def intake_events(slug: str, v: dict[str, Any], prepared: Prepared) -> list[dict[str, Any]]:
    """`received` (the intent and the action, as the agent decided it) and `evaluated`."""
    body, ev = prepared.body, prepared.evaluation
    common = {
        "actor_kind": "agent",
        "actor_id": slug,
        "agent": slug,
        "deferral_id": v["id"],
        "at": v["created_at"],
    }
    received = {
        "webhook_id": v["webhook_id"],
        "on_behalf_of": prepared.principal.as_audit(),
        "intent": prepared.audit_intent,
        "summary": body["summary"],
        "rationale": body.get("rationale"),
        "action": prepared.audit_action,
        "action_digest": v["action_digest"],
        "resource": body.get("resource"),
        "trace": body.get("trace"),
        "labels": v["labels"],
        "state": prepared.audit_state,
        "expires_at": v["expires_at"].isoformat(),
    }
    evaluated = {
        **ev.as_risk(),
        "priority": v["priority"],
        "diff": {"count": prepared.diff["count"], "truncated": prepared.diff["truncated"]},
        "route": prepared.routed.audit if prepared.routed else None,
    }
    return [
        {**common, "event_type": "deferral.received", "payload": received},
        {**common, "event_type": "deferral.evaluated", "payload": evaluated},
    ]
