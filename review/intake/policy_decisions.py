"""A deferral the policy decides at intake: its terminal values, its event, its callback.

When the evaluation's outcome is `allow` or `deny` (review/intake/policy.py), intake
inserts the deferral already `approved` or `rejected`, in its one transaction
(review/intake/deferrals.py): the columns every ending sets (`terminal_values`, decided
by `["policy"]`, the reason naming the rule; an approval valid for
COUNTERSIGN_APPROVAL_TTL with its signed receipt, as a reviewer's approval has), the
decision's audit event after `received` and `evaluated` (actor `system:policy`), and the
`deferral.decided` callback's outbox row, written only when the agent has a callback
URL (PostgreSQL's intake function checks it, migration 0013). After the commit its
delivery is queued, so the callback is attempted at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Connection, bindparam, exists, insert, select

from review.callbacks.wakeups import after_commit, note_deliver
from review.db import Notes
from review.driver_statements import driver
from review.ids import new_event_id
from review.intake.policy import Evaluation
from review.models import Agent, OutboxEvent
from review.resources import deferral_resource, rfc3339
from review.reviewing.ending import terminal_values
from review.reviewing.receipts import issue_receipt
from review.services import Services

POLICY = "policy"  # decided_by of a policy decision; no user may take the name
STATUS = {"allow": "approved", "deny": "rejected"}


@dataclass(frozen=True)
class PolicyDecision:
    deferral_id: str
    event: dict[str, Any]  # the decision's audit event
    callback: dict[str, Any]  # the callback's outbox row, if the agent has a callback URL


def decide_at_intake(
    svc: Services, values: dict[str, Any], slug: str, evaluation: Evaluation, now: datetime
) -> PolicyDecision | None:
    """End the new deferral's `values` as the policy decided (None: a person decides)."""
    status = STATUS.get(evaluation.outcome)
    if status is None:
        return None
    reason = evaluation.reason
    valid_until = receipt = None
    payload: dict[str, Any] = {
        "reason": reason,
        "decided_by": [POLICY],
        "rule": evaluation.rule,
        "policy_version": evaluation.policy_version,
        "risk_level": values["risk_level"],
        "action_digest": values["action_digest"],
    }
    if status == "approved":
        valid_until = now + timedelta(seconds=svc.settings.approval_ttl)
        deferral = _as_deferral(values, slug)
        receipt = issue_receipt(svc.settings, deferral, [POLICY], now, valid_until)  # type: ignore[arg-type]
        payload.update(valid_until=rfc3339(valid_until), receipt=receipt.claims)
        payload["receipt_kid"] = receipt.kid
    values.update(
        terminal_values(
            status, now, reason, [POLICY], valid_until, receipt.token if receipt else None
        )
    )
    event = {
        "actor_kind": "system",
        "actor_id": POLICY,
        "event_type": f"deferral.{status}",
        "agent": slug,
        "deferral_id": values["id"],
        "at": now,
        "payload": payload,
    }
    return PolicyDecision(values["id"], event, _callback_row(values, slug, now))


def rendered(values: dict[str, Any]) -> SimpleNamespace:
    """A new deferral's values as the resource renders them (an approval has no report yet)."""
    if values["status"] == "approved":
        return SimpleNamespace(**values, execution=None)
    return SimpleNamespace(**values)


def _as_deferral(values: dict[str, Any], slug: str) -> SimpleNamespace:
    """What `issue_receipt` reads of a deferral, before its row exists."""
    return SimpleNamespace(
        id=values["id"],
        agent=SimpleNamespace(slug=slug),
        action_digest=values["action_digest"],
        policy_version=values["policy_version"],
    )


def _callback_row(values: dict[str, Any], slug: str, now: datetime) -> dict[str, Any]:
    """The `deferral.decided` outbox row, as review/callbacks/outbox.py writes one."""
    body = {
        "type": "deferral.decided",
        "timestamp": rfc3339(now),
        "data": deferral_resource(rendered(values), slug),  # type: ignore[arg-type]
    }
    return {
        "id": new_event_id(),
        "agent_id": values["agent_id"],
        "deferral_id": values["id"],
        "event_type": "deferral.decided",
        "body": json.dumps(body, separators=(",", ":"), ensure_ascii=False),
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "last_status_code": None,
        "last_error": None,
        "created_at": now,
        "finished_at": None,
    }


# Wake-ups: only the delivery. Ending a deferral also wakes its long-polls
# (`note_ended`), but nobody can be waiting on one that did not exist before this answer.


def write_callback(conn: Connection, notes: Notes, decision: PolicyDecision) -> None:
    """SQLite: the callback in intake's transaction (review/db.py `write_core`) if the agent
    has a callback URL (one statement, as the PostgreSQL function does); when it was
    written, its delivery is noted, to be queued after the commit."""
    inserted = driver.execute(conn, _INSERT_CALLBACK, decision.callback)
    if inserted.rowcount:
        note_deliver(notes, decision.callback["id"])


def wake_after_commit(svc: Services, decision: PolicyDecision) -> None:
    """PostgreSQL's intake function committed; queue the delivery a session would have.

    The function wrote the callback only if the agent has a URL; when it has none, the
    flush finds nothing to deliver."""
    after_commit(svc.redis.client, {"deliver": [decision.callback["id"]]})


_outbox, _agents = OutboxEvent.__table__, Agent.__table__
# INSERT INTO outbox_events (...) SELECT :id, ... WHERE EXISTS (the agent has a URL)
_INSERT_CALLBACK = insert(_outbox).from_select(
    [c.name for c in _outbox.columns],
    select(*(bindparam(c.name, type_=c.type) for c in _outbox.columns)).where(
        exists().where(_agents.c.id == bindparam("agent_id"), _agents.c.callback_url != "")
    ),
)
