"""Callback delivery: signed POSTs from the outbox, retried on schedule, dead-lettered at last.

`deliver(event_id)` makes one attempt: it resolves and checks the callback URL
(review/outbound.py), POSTs the stored body signed with the agent's newest secret and
the event id as `webhook-id`, reads at most RESPONSE_CAP bytes of the answer, and
records the attempt (and its audit event) with a conditional update, so an attempt is
counted once even if two workers ran it. A 2xx within 15 s delivers; 410 dead-letters
at once; anything else (3xx included: redirects are not followed) is retried after the
next delay of COUNTERSIGN_RETRY_SCHEDULE, jittered, or after the receiver's
Retry-After; after the last delay the event is dead-lettered. A decision queues
its callback's first attempt as it commits (review/notify.py); `relay()`, on the
worker's tick, queues any callback overdue by RELAY_GRACE, so a Redis outage or a
killed worker only delays callbacks.
"""

from __future__ import annotations

import logging
import random
import time
from datetime import datetime, timedelta

import httpx
import redis
from sqlalchemy import insert, select, update

from approval_queue import names
from approval_queue.jobs import enqueue
from review.agents import signers
from review.audit import record_event
from review.models import Agent, DeliveryAttempt, OutboxEvent, utcnow
from review.outbound import OutboundRefused, resolve
from review.runtime import Runtime, current_runtime
from review.signing import sign_headers

log = logging.getLogger(__name__)
TIMEOUT_SECONDS = 15.0
RESPONSE_CAP = 64 * 1024
MAX_RETRY_AFTER = 86400
RELAY_BATCH = 200
RELAY_GRACE = 5  # seconds a due callback may wait for its own job before the relay queues it
JOB = "approval_queue.delivery.deliver"
IN_FLIGHT_PREFIX = "countersign:delivering:"
_client: httpx.Client | None = None


def http_client() -> httpx.Client:
    global _client
    if _client is None:
        _client = httpx.Client(
            timeout=httpx.Timeout(TIMEOUT_SECONDS),
            follow_redirects=False,
            trust_env=False,  # no proxy from the environment: the checked address is final
            headers={"User-Agent": "Countersign-Webhooks/1"},
        )
    return _client


def retry_after_seconds(value: str | None, now: datetime) -> int | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(int(value), MAX_RETRY_AFTER)
    try:
        from email.utils import parsedate_to_datetime

        return max(
            0, min(int((parsedate_to_datetime(value) - now).total_seconds()), MAX_RETRY_AFTER)
        )
    except (TypeError, ValueError):
        return None


def _post(
    rt: Runtime, url: str, event: OutboxEvent, secret: str
) -> tuple[int | None, str | None, str | None]:
    """(status code, error, Retry-After) of one POST."""
    try:
        target = resolve(url, allow_private=rt.settings.allow_private_callbacks)
    except OutboundRefused as exc:
        return None, f"refused: {exc}", None
    headers = sign_headers(secret, event.id, event.body)
    headers.update({"Content-Type": "application/json", "Host": target.host_header})
    extensions = {"sni_hostname": target.host} if target.url.startswith("https") else {}
    try:
        with http_client().stream(
            "POST", target.url, content=event.body.encode(), headers=headers, extensions=extensions
        ) as response:
            read = 0
            for chunk in response.iter_bytes():
                read += len(chunk)
                if read >= RESPONSE_CAP:
                    break
            return response.status_code, None, response.headers.get("retry-after")
    except httpx.TimeoutException:
        return None, f"timed out after {TIMEOUT_SECONDS:.0f} s", None
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {str(exc)[:300]}", None


def deliver(event_id: str) -> str:
    """One attempt, unless the event is done, not due yet, or in flight in another worker."""
    rt = current_runtime()
    client = rt.redis.client()
    lock = f"{IN_FLIGHT_PREFIX}{event_id}"
    # The relay may queue an event again while an attempt is under way (a slow receiver):
    # the key keeps two workers from posting it at once. A SIGKILLed holder's key lapses.
    if not client.set(lock, "1", nx=True, ex=int(TIMEOUT_SECONDS) + 5):
        return "in flight in another worker"
    try:
        return _attempt(rt, event_id)
    finally:
        client.delete(lock)


def _attempt(rt: Runtime, event_id: str) -> str:
    with rt.db.read() as session:
        event = session.get(OutboxEvent, event_id)
        if event is None or event.status != "pending":
            return "nothing to do"
        if event.next_attempt_at > utcnow() + timedelta(seconds=1):
            return "not due yet"  # a copy queued by the relay while this one waited
        agent = session.get(Agent, event.agent_id)
        signer = signers(session, agent_id=agent.id)
        url, slug, attempt = agent.callback_url, agent.slug, event.attempts + 1
    secrets = rt.secrets.secrets_for(signer[0]) if signer else []
    started = time.monotonic()
    if not url or not secrets:
        code, error, retry_after = None, "the agent has no callback URL or secret now", None
    else:
        code, error, retry_after = _post(rt, url, event, secrets[-1])
    duration_ms = int((time.monotonic() - started) * 1000)
    now = utcnow()
    schedule = rt.settings.retry_schedule
    if code is not None and 200 <= code < 300:
        outcome, next_at = "delivered", now
    elif code == 410 or attempt > len(schedule):
        outcome, next_at = "dead", now
    else:
        delay = retry_after_seconds(retry_after, now)
        if delay is None:
            delay = schedule[attempt - 1] * random.uniform(0.9, 1.1)  # noqa: S311 (jitter)
        outcome, next_at = "pending", now + timedelta(seconds=delay)
    if code is not None and error is None and outcome != "delivered":
        error = f"HTTP {code}" + (" (redirects are not followed)" if 300 <= code < 400 else "")
    table = OutboxEvent.__table__
    with rt.db.write() as session:
        counted = session.execute(
            update(table)
            .where(
                table.c.id == event_id, table.c.status == "pending", table.c.attempts == attempt - 1
            )
            .values(
                attempts=attempt,
                status=outcome,
                next_attempt_at=next_at,
                last_status_code=code,
                last_error=error,
                finished_at=None if outcome == "pending" else now,
            )
        ).rowcount
        if counted != 1:
            return "recorded by another worker"
        session.execute(
            insert(DeliveryAttempt.__table__).values(
                event_id=event_id,
                attempted_at=now,
                status_code=code,
                error=error,
                duration_ms=duration_ms,
            )
        )
        record_event(
            session,
            actor_kind="system",
            actor_id="delivery",
            event_type="callback.attempted",
            agent=slug,
            deferral_id=event.deferral_id,
            payload={
                "event_id": event_id,
                "event_type": event.event_type,
                "attempt": attempt,
                "status_code": code,
                "error": error,
                "duration_ms": duration_ms,
                "outcome": outcome,
                "next_attempt_at": next_at.isoformat() if outcome == "pending" else None,
            },
            at=now,
        )
    if outcome == "pending":
        _schedule(rt, event_id, (next_at - now).total_seconds())
    log.info("callback %s attempt %d: %s (%s)", event_id, attempt, outcome, code or error)
    return outcome


def _schedule(rt: Runtime, event_id: str, delay: float) -> None:
    try:
        enqueue(
            rt.redis.client(), JOB, event_id, queue_name=names.CALLBACKS, delay=max(delay, 0.001)
        )
    except redis.RedisError as exc:  # the relay will find it when it is due
        log.warning("callback %s not scheduled (%s); the relay will pick it up", event_id, exc)


def relay(rt: Runtime | None = None) -> int:
    """Queue every pending callback that is due (the safety net under the direct path)."""
    rt = rt or current_runtime()
    now = utcnow()
    with rt.db.read() as session:
        due = session.scalars(
            select(OutboxEvent.id)
            .where(
                OutboxEvent.status == "pending",
                # Only what its own job should have sent by now: a decision queues its
                # callback as it commits, and a retry is scheduled when the attempt before
                # it fails; this finds the ones lost to a Redis outage or a killed worker.
                OutboxEvent.next_attempt_at <= now - timedelta(seconds=RELAY_GRACE),
            )
            .order_by(OutboxEvent.next_attempt_at)
            .limit(RELAY_BATCH)
        ).all()
    client = rt.redis.client()
    for event_id in due:
        enqueue(client, JOB, event_id, queue_name=names.CALLBACKS)
    return len(due)
