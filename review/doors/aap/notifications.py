"""`request.resolved`: AAP's notification that a request has a decision, through the outbox.

When a deferral that came in through an instance with a webhook receiver ends, the
transaction that ends it (review/callbacks/outbox.py `add_decision`) writes one outbox
row of type `request.resolved`, so the notification is as durable as the decision. The
worker delivers it like any callback (retries, dead letters, Redeliver, the agent's
deliveries page), except that it goes to the instance's receiver, signed with the
instance's secret (`destinations`). Its body is AAP's RequestResolvedEvent; its id is a
UUID, which is also the `webhook-id` of every attempt, as AAP requires.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from review.callbacks.wakeups import note_deliver
from review.models import Deferral, OutboxEvent
from review.sealing import SecretBox

from .tables import AapInstance, AapRequest
from .wire import request_id, stamp

RESOLVED = "request.resolved"


def receivers_of(session: Session, deferral_ids: list[str]) -> dict[str, str]:
    """deferral id -> the id of the instance to tell, for those of `deferral_ids` that are
    AAP requests of an instance with a receiver: one indexed lookup for all of them."""
    if not deferral_ids:
        return {}
    with session.no_autoflush:  # rows being written by the caller need no flush for this
        rows = session.execute(
            select(AapRequest.deferral_id, AapInstance.id)
            .join(AapInstance, AapRequest.instance_id == AapInstance.id)
            .where(AapRequest.deferral_id.in_(deferral_ids), AapInstance.delivery_url.is_not(None))
        ).all()
    return {deferral_id: instance_id for deferral_id, instance_id in rows}


def add_resolved(
    session: Session, deferral: Deferral, now: datetime, instance_id: str | None = None
) -> OutboxEvent | None:
    """Queue `request.resolved` if the deferral is an AAP request of an instance with a
    receiver (`instance_id` when the caller looked it up already, with receivers_of)."""
    if instance_id is None:
        instance_id = receivers_of(session, [deferral.id]).get(deferral.id)
    if instance_id is None:
        return None
    event_id = str(uuid.uuid4())
    body = {
        "id": event_id,
        "type": RESOLVED,
        "instance_id": instance_id,
        "request_id": request_id(deferral.id),
        "created_at": stamp(deferral.decided_at or now),
    }
    event = OutboxEvent(
        id=event_id,
        agent_id=deferral.agent_id,
        deferral_id=deferral.id,
        event_type=RESOLVED,
        body=json.dumps(body, separators=(",", ":")),
        status="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(event)
    note_deliver(session, event_id)
    return event


def has_resolved(session: Session, deferral_id: str) -> bool:
    return (
        session.scalar(
            select(OutboxEvent.id).where(
                OutboxEvent.deferral_id == deferral_id, OutboxEvent.event_type == RESOLVED
            )
        )
        is not None
    )


def destinations(
    session: Session, box: SecretBox, rows: Iterable[Any]
) -> dict[str, tuple[str | None, str | None]]:
    """For the due outbox rows that are `request.resolved`: event id -> (the instance's
    receiver URL, its signing secret) as they are now (a replaced receiver gets them)."""
    events = [(row.id, row.deferral_id) for row in rows if row.event_type == RESOLVED]
    if not events:
        return {}
    found = session.execute(
        select(AapRequest.deferral_id, AapInstance.delivery_url, AapInstance.signing_secret)
        .join(AapInstance, AapInstance.id == AapRequest.instance_id)
        .where(AapRequest.deferral_id.in_({deferral_id for _, deferral_id in events}))
    ).all()
    receivers = {d: (url, box.open(sealed) if sealed else None) for d, url, sealed in found}
    return {event_id: receivers.get(d, (None, None)) for event_id, d in events}
