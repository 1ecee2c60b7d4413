"""Callback delivery: signed POSTs from the outbox, retried on schedule, dead-lettered at last.

`flush()` attempts every due callback: it POSTs the stored body, signed with the agent's
newest secret and the event id as `webhook-id`, through review/callbacks/outbound.py
(address checked and pinned; one deadline, COUNTERSIGN_DELIVERY_DEADLINE, for the whole
attempt; at most 64 KiB of the answer read), and records the attempt (and its audit
event) with a conditional update, so an attempt is counted once even if two workers ran
it. A 2xx within the deadline delivers; 410 dead-letters at once; anything else (3xx
included: redirects are not followed; "deadline exceeded" too) is retried after the
next delay of COUNTERSIGN_RETRY_SCHEDULE, jittered, or after the receiver's
Retry-After; after the last delay the event is dead-lettered. A committed decision
queues a flush (review/callbacks/wakeups.py); `relay()`, on the worker's tick, queues one
whenever callbacks are due, so a Redis outage or a killed worker only delays them.

One receiver never stalls another agent's callbacks. Attempts run on a pool of
COUNTERSIGN_DELIVERY_CONCURRENCY threads, at most COUNTERSIGN_DELIVERY_PER_AGENT of them
for one agent, and there are no rounds: whenever attempts end (and every POLL_SECONDS
while some are running) the flush takes more due callbacks, leaving out agents whose
share is in use. A slow or hostile receiver so holds its own agent's share, for at most
the deadline, while the other agents' callbacks keep going out; it takes
concurrency / per_agent such receivers (16 by default) to fill one worker.
Claiming and posting one attempt: queue/delivery_attempts.py.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime, timedelta

import redis
from sqlalchemy import func, insert, select, update

from approval_queue import names
from approval_queue.delivery_attempts import Attempt, claim_due, post_attempt
from approval_queue.jobs import enqueue
from review import redis_keys
from review.audit.chain import record_events
from review.callbacks.wakeups import FLUSH_JOB, queue_flush
from review.models import DeliveryAttempt, OutboxEvent, utcnow
from review.observability import metrics
from review.services import Services, current_services

log = logging.getLogger(__name__)
MAX_RETRY_AFTER = 86400
RELAY_BATCH = 200
MIN_RETRY_SECONDS = 1  # even after "Retry-After: 0"
POLL_SECONDS = 0.2  # while attempts run, look this often for newly due callbacks
GATHER_SECONDS = 0.02  # after an answer, wait this long for more to share a commit
FLUSH_SECONDS = 60  # a flush takes new callbacks this long, then hands on to a fresh job
_pools: dict[int, ThreadPoolExecutor] = {}


def _pool(size: int) -> ThreadPoolExecutor:
    if size not in _pools:
        _pools[size] = ThreadPoolExecutor(max_workers=size, thread_name_prefix="callback")
    return _pools[size]


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


def flush(svc: Services | None = None) -> int:
    """Deliver every callback that is due; how many were tried.

    The job a committed decision queues (review/callbacks/wakeups.py), the retry scheduled
    after a failed attempt, the worker's tick and a person's Redeliver all come here. It
    claims due events with a short Redis key each (another worker flushing at the same
    moment skips them; a SIGKILLed holder's keys lapse), posts them on the pool, takes
    more as attempts end, and records each attempt with its audit event: attempts that
    end together share one transaction, so one commit (one fsync) serves many callbacks.
    """
    svc = svc or current_services()
    client = svc.redis.client()
    client.delete(
        redis_keys.DELIVERY_FLUSH_QUEUED
    )  # a decision committed from now on queues another flush
    return _Flush(svc, client).run()


class _Flush:
    """One flush: the attempts on the wire, each agent's share of them, what it holds."""

    def __init__(self, svc: Services, client: redis.Redis):
        self.svc, self.client = svc, client
        settings = svc.settings
        self.deadline = settings.delivery_deadline
        self.concurrency = settings.delivery_concurrency
        self.share = settings.delivery_per_agent
        self.running: dict[Future[Attempt], Attempt] = {}
        self.busy: Counter[int] = Counter()  # attempts on the wire, per agent
        self.held: set[str] = set()  # events claimed and not yet recorded
        self.claiming_until = time.monotonic() + FLUSH_SECONDS
        self.next_look = 0.0
        self.redis_lost = False
        self.tried = 0

    def run(self) -> int:
        ended: list[Attempt] = []
        while True:
            # New attempts go out before the ended ones are recorded: the commit overlaps them.
            self._take_more(look=bool(ended) or not self.running)
            if ended:
                self._finish(ended)
                ended = []
                if not self.running:
                    continue  # look once more before stopping
            if not self.running:
                break
            ended = self._collect()
        if time.monotonic() >= self.claiming_until and not self.redis_lost:
            try:  # long enough for one job: a fresh one carries on (rq's job timeout)
                self.client.delete(redis_keys.DELIVERY_FLUSH_QUEUED)
                queue_flush(self.client)
            except redis.RedisError as exc:
                log.warning("next flush not queued (%s); the worker's tick will queue it", exc)
        return self.tried

    def _take_more(self, *, look: bool) -> None:
        now = time.monotonic()
        if not look and now < self.next_look:
            return
        self.next_look = now + POLL_SECONDS
        room = self.concurrency - len(self.running)
        if room <= 0 or self.redis_lost or now >= self.claiming_until:
            return
        try:
            batch = claim_due(self.svc, self.client, room, self.share, self.busy, self.held)
        except redis.RedisError as exc:  # no safe claims without Redis: finish what runs
            log.warning("delivery stops claiming callbacks: %s", exc)
            self.redis_lost = True
            return
        pool = _pool(self.concurrency)
        for a in batch:
            self.held.add(a.event_id)
            self.busy[a.agent_id] += 1
            self.running[pool.submit(post_attempt, self.svc, a, self.deadline)] = a
        self.tried += len(batch)

    def _collect(self) -> list[Attempt]:
        """Attempts that ended (none when it is time to look for new callbacks)."""
        timeout = max(self.next_look - time.monotonic(), 0.0)
        done, _ = wait(self.running, timeout=timeout, return_when=FIRST_COMPLETED)
        if done and len(done) < len(self.running):  # answers come close together: gather
            more, _ = wait(set(self.running) - done, timeout=GATHER_SECONDS)
            done |= more
        ended = []
        for future in done:
            a = self.running.pop(future)
            self.busy[a.agent_id] -= 1
            ended.append(future.result())
        return ended

    def _finish(self, ended: list[Attempt]) -> None:
        try:
            _record(self.svc, ended)
        finally:
            self.held.difference_update(a.event_id for a in ended)
            try:
                self.client.delete(*[redis_keys.delivering(a.event_id) for a in ended])
            except redis.RedisError as exc:  # the keys lapse on their own
                log.warning("in-flight keys not released (%s)", exc)


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
    counted_attempts: list[tuple[Attempt, str]] = []
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
            counted_attempts.append((a, outcome))
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
    for a, outcome in counted_attempts:  # committed: now they count
        waited = (now - a.created_at).total_seconds() if a.created_at else None
        metrics.observe_attempt(outcome, a.duration_ms / 1000, waited)
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
