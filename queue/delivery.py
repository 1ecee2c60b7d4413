"""Callback delivery: signed POSTs from the outbox, retried on schedule, dead-lettered at last.

`flush()` attempts every due callback: for each it resolves and checks the callback
URL (review/callbacks/outbound.py), POSTs the stored body signed with the agent's newest secret
and the event id as `webhook-id`, reads at most RESPONSE_CAP bytes of the answer, and
records the attempt (and its audit event) with a conditional update, so an attempt is
counted once even if two workers ran it. A 2xx within 15 s delivers; 410 dead-letters
at once; anything else (3xx included: redirects are not followed) is retried after the
next delay of COUNTERSIGN_RETRY_SCHEDULE, jittered, or after the receiver's
Retry-After; after the last delay the event is dead-lettered. A committed decision
queues a flush (review/callbacks/wakeups.py); `relay()`, on the worker's tick, queues one whenever
callbacks are due, so a Redis outage or a killed worker only delays them.
"""

from __future__ import annotations

import logging
import random
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
import redis
from sqlalchemy import func, insert, select, update

from approval_queue import names
from approval_queue.jobs import enqueue
from review import redis_keys
from review.agents.registry import signers
from review.audit.chain import record_events
from review.callbacks.outbound import OutboundRefused, resolve
from review.callbacks.wakeups import FLUSH_JOB, queue_flush
from review.models import Agent, DeliveryAttempt, OutboxEvent, utcnow
from review.services import Services, current_services
from review.signing import sign_headers

log = logging.getLogger(__name__)
TIMEOUT_SECONDS = 15.0
RESPONSE_CAP = 64 * 1024
MAX_RETRY_AFTER = 86400
RELAY_BATCH = 200
MIN_RETRY_SECONDS = 1  # even after "Retry-After: 0"
IN_FLIGHT_SECONDS = int(TIMEOUT_SECONDS) + 5
BATCH = 64  # events posted at once by one worker
PER_AGENT = 16  # of which at most this many go to one agent
GATHER_SECONDS = 0.05  # after the first answer, wait this long for more to share a commit
_pool_instance: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _pool_instance
    if _pool_instance is None:
        _pool_instance = ThreadPoolExecutor(max_workers=BATCH, thread_name_prefix="callback")
    return _pool_instance


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
    svc: Services, url: str, event_id: str, body: str, secret: str
) -> tuple[int | None, str | None, str | None]:
    """(status code, error, Retry-After) of one POST."""
    try:
        target = resolve(url, allow_private=svc.settings.allow_private_callbacks)
    except OutboundRefused as exc:
        return None, f"refused: {exc}", None
    headers = sign_headers(secret, event_id, body)
    headers.update({"Content-Type": "application/json", "Host": target.host_header})
    extensions = {"sni_hostname": target.host} if target.url.startswith("https") else {}
    try:
        with http_client().stream(
            "POST", target.url, content=body.encode(), headers=headers, extensions=extensions
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


def flush(svc: Services | None = None) -> int:
    """Deliver every callback that is due, in rounds of at most BATCH; how many were tried.

    The job a committed decision queues (review/callbacks/wakeups.py), the retry scheduled after a
    failed attempt, the worker's tick and a person's Redeliver all come here. Each round
    takes the due events (at most PER_AGENT of one agent, so one slow receiver cannot
    hold a whole round), claims them with a short Redis key each (another worker
    flushing at the same moment skips them; a SIGKILLed holder's keys lapse), posts them
    concurrently, and records each attempt with its audit event: results that arrive
    together share one transaction, so one commit (one fsync) serves many callbacks.
    """
    svc = svc or current_services()
    client = svc.redis.client()
    client.delete(
        redis_keys.DELIVERY_FLUSH_QUEUED
    )  # a decision committed from now on queues another flush
    tried = 0
    while True:
        batch = _claim(svc, client)
        if not batch:
            return tried
        try:
            _post_and_record(svc, batch)
        finally:
            client.delete(*[redis_keys.delivering(a.event_id) for a in batch])
        tried += len(batch)


def _claim(svc: Services, client: redis.Redis) -> list[Attempt]:
    now = utcnow()
    with svc.db.read() as session:
        due = session.execute(
            select(
                OutboxEvent.id,
                OutboxEvent.agent_id,
                OutboxEvent.deferral_id,
                OutboxEvent.event_type,
                OutboxEvent.body,
                OutboxEvent.attempts,
            )
            .where(OutboxEvent.status == "pending", OutboxEvent.next_attempt_at <= now)
            .order_by(OutboxEvent.next_attempt_at)
            .limit(BATCH * 4)
        ).all()
        if not due:
            return []
        taken: dict[int, int] = {}
        chosen = []
        for row in due:
            if taken.get(row.agent_id, 0) < PER_AGENT and len(chosen) < BATCH:
                taken[row.agent_id] = taken.get(row.agent_id, 0) + 1
                chosen.append(row)
        pipe = client.pipeline(transaction=False)
        for row in chosen:
            pipe.set(redis_keys.delivering(row.id), "1", nx=True, ex=IN_FLIGHT_SECONDS)
        mine = [row for row, got in zip(chosen, pipe.execute(), strict=True) if got]
        agents = {a.id: a for a in session.scalars(select(Agent).where(Agent.id.in_(list(taken))))}
        keys = {
            signer.id: signer
            for agent_id in {row.agent_id for row in mine}
            for signer in signers(session, agent_id=agent_id, include_deactivated=True)
        }
    batch = []
    for row in mine:
        agent = agents[row.agent_id]
        signer = keys.get(agent.id)
        live = svc.secrets.secrets_for(signer) if signer else []
        batch.append(
            Attempt(
                event_id=row.id,
                agent_id=agent.id,
                slug=agent.slug,
                deferral_id=row.deferral_id,
                event_type=row.event_type,
                body=row.body,
                url=agent.callback_url,
                attempt=row.attempts + 1,
                secret=live[-1] if live else None,
            )
        )
    return batch


def _post_one(svc: Services, a: Attempt) -> Attempt:
    started = time.monotonic()
    if not a.url or not a.secret:
        a.error = "the agent has no callback URL or secret now"
    else:
        a.code, a.error, a.retry_after = _post(svc, a.url, a.event_id, a.body, a.secret)
    a.duration_ms = int((time.monotonic() - started) * 1000)
    return a


def _post_and_record(svc: Services, batch: list[Attempt]) -> None:
    if len(batch) == 1:
        _record(svc, [_post_one(svc, batch[0])])
        return
    pending = {_pool().submit(_post_one, svc, a) for a in batch}
    while pending:
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        if pending:  # answers from one receiver come close together: gather them
            more, pending = wait(pending, timeout=GATHER_SECONDS)
            done |= more
        _record(svc, [f.result() for f in done])


def _outcome(svc: Services, a: Attempt, now: datetime) -> tuple[str, datetime]:
    schedule = svc.settings.retry_schedule
    if a.code is not None and 200 <= a.code < 300:
        return "delivered", now
    if a.code is not None and a.error is None:
        a.error = f"HTTP {a.code}" + (
            " (redirects are not followed)" if 300 <= a.code < 400 else ""
        )
    if a.code == 410 or a.attempt > len(schedule):
        return "dead", now
    delay = retry_after_seconds(a.retry_after, now)
    if delay is None:
        delay = schedule[a.attempt - 1] * random.uniform(0.9, 1.1)  # noqa: S311 (jitter)
    return "pending", now + timedelta(seconds=max(delay, MIN_RETRY_SECONDS))


def _record(svc: Services, results: list[Attempt]) -> None:
    """Each attempt, counted once (conditional update) with its audit event, in one commit."""
    now = utcnow()
    table = OutboxEvent.__table__
    retries = []
    with svc.db.write() as session:
        events = []
        for a in results:
            outcome, next_at = _outcome(svc, a, now)
            counted = session.execute(
                update(table)
                .where(
                    table.c.id == a.event_id,
                    table.c.status == "pending",
                    table.c.attempts == a.attempt - 1,
                )
                .values(
                    attempts=a.attempt,
                    status=outcome,
                    next_attempt_at=next_at,
                    last_status_code=a.code,
                    last_error=a.error,
                    finished_at=None if outcome == "pending" else now,
                )
            ).rowcount
            if counted != 1:
                continue  # recorded by another worker
            session.execute(
                insert(DeliveryAttempt.__table__).values(
                    event_id=a.event_id,
                    attempted_at=now,
                    status_code=a.code,
                    error=a.error,
                    duration_ms=a.duration_ms,
                )
            )
            events.append(
                {
                    "actor_kind": "system",
                    "actor_id": "delivery",
                    "event_type": "callback.attempted",
                    "agent": a.slug,
                    "deferral_id": a.deferral_id,
                    "payload": {
                        "event_id": a.event_id,
                        "event_type": a.event_type,
                        "attempt": a.attempt,
                        "status_code": a.code,
                        "error": a.error,
                        "duration_ms": a.duration_ms,
                        "outcome": outcome,
                        "next_attempt_at": next_at.isoformat() if outcome == "pending" else None,
                    },
                    "at": now,
                }
            )
            if outcome == "pending":
                retries.append((next_at - now).total_seconds())
            log.info(
                "callback %s attempt %d: %s (%s)", a.event_id, a.attempt, outcome, a.code or a.error
            )
        if events:
            record_events(session, events)
    for delay in sorted(set(round(d, 1) for d in retries)):
        _schedule_flush(svc, delay)


def _schedule_flush(svc: Services, delay: float) -> None:
    try:
        enqueue(svc.redis.client(), FLUSH_JOB, queue_name=names.CALLBACKS, delay=max(delay, 0.001))
    except redis.RedisError as exc:  # the tick will find it when it is due
        log.warning("retry not scheduled (%s); the worker's tick will pick it up", exc)


def relay(svc: Services | None = None) -> int:
    """On the worker's tick: queue a flush when callbacks are due; how many are due.

    The safety net under the direct path: it finds callbacks whose wake-up was lost to
    a Redis outage, and retries whose scheduled flush waited behind rq's scheduler.
    """
    svc = svc or current_services()
    with svc.db.read() as session:
        due = session.scalar(
            select(func.count()).select_from(
                select(OutboxEvent.id)
                .where(OutboxEvent.status == "pending", OutboxEvent.next_attempt_at <= utcnow())
                .limit(RELAY_BATCH)
                .subquery()
            )
        )
    if due:
        client = svc.redis.client()
        client.delete(
            redis_keys.DELIVERY_FLUSH_QUEUED
        )  # a flush marked queued may have died with its worker
        queue_flush(client)
    return due
