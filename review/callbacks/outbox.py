"""The outbox: callbacks recorded in the same transaction as the decision they report.

A decision that commits has its callback row; one that rolls back has none. Redis and
the worker only move rows from here to the agent, so an outage delays a callback but
cannot lose it (PROTOCOL.md section 6).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from review.callbacks.wakeups import note_deliver
from review.doors.aap import notifications as aap_notifications
from review.ids import new_event_id
from review.models import Agent, Deferral, OutboxEvent
from review.notifications import outbox as notification_outbox
from review.resources import deferral_resource, rfc3339


def add_agent_event(
    session: Session, agent: Agent, event_type: str, status: dict, now: datetime
) -> OutboxEvent | None:
    """Queue `agent.killed` or `agent.revived` with the status object (PROTOCOL.md 6)."""
    if not agent.callback_url:
        return None
    return _add(session, agent.id, None, event_type, status, now)


def add_decision(session: Session, deferral: Deferral, now: datetime) -> OutboxEvent | None:
    """Queue `deferral.decided` for the agent, if it has a callback URL (and AAP's
    `request.resolved` for the instance that asked, if it has a receiver)."""
    return add_decisions(session, [deferral], now)[0]


def add_decisions(
    session: Session,
    deferrals: list[Deferral],
    now: datetime,
    *,
    receivers: dict[str, str] | None = None,
    notified: list[Deferral] | None = None,
) -> list[OutboxEvent | None]:
    """add_decision for many deferrals ended together (a kill switch ends hundreds), with
    one lookup of AAP receivers for all of them. `receivers` (deferral id -> AAP instance)
    and `notified` (those a notification told of): what the caller's own statement found
    already (review/reviewing/ending.py); None: looked up here."""
    if receivers is None:
        receivers = aap_notifications.receivers_of(session, [d.id for d in deferrals])
    # The people and channels told of them: follow-ups (Slack updates its message).
    notification_outbox.add_decided(session, deferrals if notified is None else notified, now)
    added = []
    for deferral in deferrals:
        instance_id = receivers.get(deferral.id)
        if instance_id is not None:
            aap_notifications.add_resolved(session, deferral, now, instance_id)
        added.append(_decided(session, deferral, now))
    return added


def _decided(session: Session, deferral: Deferral, now: datetime) -> OutboxEvent | None:
    if deferral.canary:
        return None  # a canary is no agent's: however it ends, no callback (review/canaries/)
    if not deferral.agent.callback_url:
        return None  # the agent reads decisions with GET /api/v1/deferrals/{id}
    return _add(
        session,
        deferral.agent_id,
        deferral.id,
        "deferral.decided",
        deferral_resource(deferral),
        now,
    )


def decision_row(deferral: Deferral, now: datetime) -> dict[str, Any] | None:
    """The `deferral.decided` row add_decision would add for the ended `deferral` (its
    values as they now are), as column values; None when it owes no callback. For a
    decision prepared before SQLite's write lock (review/reviewing/prepared_decisions.py),
    which inserts it under the lock and calls note_deliver."""
    if deferral.canary or not deferral.agent.callback_url:
        return None
    return _row(
        deferral.agent_id, deferral.id, "deferral.decided", deferral_resource(deferral), now
    )


def _row(
    agent_id: int, deferral_id: str | None, event_type: str, data: dict, now: datetime
) -> dict[str, Any]:
    body = {"type": event_type, "timestamp": rfc3339(now), "data": data}
    return {
        "id": new_event_id(),
        "agent_id": agent_id,
        "deferral_id": deferral_id,
        "event_type": event_type,
        "body": json.dumps(body, separators=(",", ":"), ensure_ascii=False),
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


def _add(
    session: Session,
    agent_id: int,
    deferral_id: str | None,
    event_type: str,
    data: dict,
    now: datetime,
) -> OutboxEvent:
    event = OutboxEvent(**_row(agent_id, deferral_id, event_type, data, now))
    session.add(event)
    note_deliver(session, event.id)
    return event
