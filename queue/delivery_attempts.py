"""Delivery attempts: claiming due callbacks (no agent beyond its share), posting one.

`claim_due` picks the callbacks a flush may post now: due ones, oldest first, at most
`room` of them and no agent beyond `share` attempts on the wire; each is claimed with a
short Redis key (review/redis_keys.py `delivering`), so two workers never post it at
once and a SIGKILLed holder's keys lapse. `post_attempt` signs and posts one through
review/callbacks/outbound.py and notes what came of it.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

import redis
from sqlalchemy import select

from review import redis_keys
from review.agents.registry import signers
from review.callbacks import outbound
from review.doors.aap.notifications import destinations
from review.models import Agent, OutboxEvent, utcnow
from review.services import Services
from review.signing import sign_headers

log = logging.getLogger(__name__)
IN_FLIGHT_MARGIN = 10  # the in-flight key outlives the deadline by this many seconds
CLAIM_PASSES = 3  # queries per claim when one agent's backlog fills the page


@dataclass
class Attempt:
    """One event to post, and then what came of it."""

    event_id: str
    agent_id: int
    slug: str
    deferral_id: str | None
    event_type: str
    body: str
    url: str | None
    attempt: int
    secret: str | None = None
    code: int | None = None
    error: str | None = None
    retry_after: str | None = None
    duration_ms: int = 0
    created_at: datetime | None = None  # the outbox row's: delivery latency (metrics)


def claim_due(
    svc: Services,
    client: redis.Redis,
    room: int,
    share: int,
    busy: Counter[int],
    held: set[str],
) -> list[Attempt]:
    """Due callbacks to post now: at most `room`, no agent beyond `share` on the wire."""
    now = utcnow()
    taken = Counter(busy)
    skip = set(held)
    mine = []
    with svc.db.read() as session:
        for _ in range(CLAIM_PASSES):
            limit = (room - len(mine)) * 4
            query = (
                select(
                    OutboxEvent.id,
                    OutboxEvent.agent_id,
                    OutboxEvent.deferral_id,
                    OutboxEvent.event_type,
                    OutboxEvent.body,
                    OutboxEvent.attempts,
                    OutboxEvent.created_at,
                )
                .where(OutboxEvent.status == "pending", OutboxEvent.next_attempt_at <= now)
                .order_by(OutboxEvent.next_attempt_at)
                .limit(limit)
            )
            full = [agent_id for agent_id, n in taken.items() if n >= share]
            if full:  # a backlog of theirs must not hide other agents' callbacks
                query = query.where(OutboxEvent.agent_id.not_in(full))
            if skip:
                query = query.where(OutboxEvent.id.not_in(skip))
            due = session.execute(query).all()
            picked = []
            for row in due:
                if len(mine) + len(picked) < room and taken[row.agent_id] < share:
                    taken[row.agent_id] += 1
                    picked.append(row)
            pipe = client.pipeline(transaction=False)
            for row in picked:
                pipe.set(redis_keys.delivering(row.id), "1", nx=True, ex=in_flight_seconds(svc))
            for row, got in zip(picked, pipe.execute() if picked else [], strict=True):
                skip.add(row.id)
                if got:
                    mine.append(row)
                else:  # another worker is posting it
                    taken[row.agent_id] -= 1
            if len(due) < limit or len(mine) >= room:
                break
        if not mine:
            return []
        agent_ids = list({row.agent_id for row in mine})
        agents = {a.id: a for a in session.scalars(select(Agent).where(Agent.id.in_(agent_ids)))}
        keys = {
            signer.id: signer
            for agent_id in agent_ids
            for signer in signers(session, agent_id=agent_id, include_deactivated=True)
        }
        aap = destinations(session, svc.box, mine)  # AAP's request.resolved: to the instance
    batch = []
    for row in mine:
        agent = agents[row.agent_id]
        signer = keys.get(agent.id)
        live = svc.secrets.secrets_for(signer) if signer else []
        url, secret = aap.get(row.id, (agent.callback_url, live[-1] if live else None))
        batch.append(
            Attempt(
                event_id=row.id,
                agent_id=agent.id,
                slug=agent.slug,
                deferral_id=row.deferral_id,
                event_type=row.event_type,
                body=row.body,
                url=url,
                attempt=row.attempts + 1,
                secret=secret,
                created_at=row.created_at,
            )
        )
    return batch


def in_flight_seconds(svc: Services) -> int:
    return svc.settings.delivery_deadline + IN_FLIGHT_MARGIN


def post_attempt(svc: Services, a: Attempt, deadline: float) -> Attempt:
    started = time.monotonic()
    if not a.url or not a.secret:
        a.error = "the agent has no callback URL or secret now"
    else:
        headers = sign_headers(a.secret, a.event_id, a.body)
        headers["Content-Type"] = "application/json"
        try:
            answer = outbound.post(
                a.url,
                a.body.encode(),
                headers,
                allow_private=svc.settings.allow_private_callbacks,
                deadline=deadline,
            )
        except Exception as exc:  # a fault of ours: still an attempt, recorded and retried
            log.exception("callback %s: the attempt failed", a.event_id)
            answer = outbound.Answer(error=f"{type(exc).__name__}: {str(exc)[:300]}")
        a.code, a.error, a.retry_after = answer.code, answer.error, answer.retry_after
    a.duration_ms = int((time.monotonic() - started) * 1000)
    return a
