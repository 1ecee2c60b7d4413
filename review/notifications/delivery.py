"""Sending notifications: due rows to their channels, retried, dead-lettered at last.

`send_due` runs on the worker's maintenance tick and as the job a committed change
queues (review/notifications/wakeups.py). It claims due rows (a short Redis key each,
so two workers never send one at once, and a SIGKILLed holder's keys lapse) and hands
each to a small thread pool, then returns: the worker's job loop and its callbacks never
wait for an SMTP server or Slack. At most CHANNEL_SHARE attempts per channel are in
flight in a process, so a dead SMTP server (each attempt waiting out
COUNTERSIGN_NOTIFY_DEADLINE) holds only e-mail's share; Slack and the webhook go on.

Each attempt is recorded with a conditional update (counted once even if two workers
ran it): delivered (with the provider's reference), retried after the next delay of
COUNTERSIGN_NOTIFY_RETRY_SCHEDULE (or the provider's Retry-After), or, after the last
delay or a refusal, dead: shown on /admin/notifications, where an admin retries it. A
message about a deferral that has ended since it was planned is skipped, not sent.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import datetime, timedelta

import redis
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from review import redis_keys
from review.audit.chain import record_event
from review.models import TERMINAL_STATUSES, Agent, Deferral, User, utcnow
from review.notifications import kinds
from review.notifications.channels.base import (
    AgentNews,
    ChannelError,
    Message,
    Recipient,
    Refused,
    Sent,
    TryLater,
)
from review.notifications.models import Notification, NotificationItem
from review.notifications.registry import channel as channel_named
from review.observability import metrics
from review.services import Services, current_services

log = logging.getLogger(__name__)
THREADS = 8
CHANNEL_SHARE = 3  # attempts in flight per channel, per worker process
CLAIM_MARGIN = 10  # the claim key outlives the deadline by this many seconds
DECIDED_WAIT = 5  # a follow-up waits this long while an earlier message is still going out
_lock = threading.Lock()
_in_flight: Counter[str] = Counter()
_held: set[str] = set()
_pool: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="notify")
        return _pool


def send_due(svc: Services | None = None, *, wait_for_them: bool = False) -> int:
    """Start sending every due notification (each channel up to its share); how many
    were started. With wait_for_them, return only once they are recorded (tests, burst)."""
    svc = svc or current_services()
    try:
        client = svc.redis.client()
        client.delete(redis_keys.NOTIFY_SEND_QUEUED)
    except redis.RedisError as exc:
        log.warning("notifications wait for Redis (%s): no safe claims without it", exc)
        return 0
    started: list[Future[str]] = []
    while True:
        batch = _claim(svc, client)
        if not batch:
            break
        pool = _executor()
        started += [pool.submit(_attempt, svc, row_id, channel) for row_id, channel in batch]
        if not wait_for_them:
            break
        wait(started)  # then look again: retries due at once, rows planned meanwhile
    if wait_for_them:
        wait(started)
    return len(started)


def _claim(svc: Services, client: redis.Redis) -> list[tuple[str, str]]:
    now = utcnow()
    with _lock:
        full = [name for name, n in _in_flight.items() if n >= CHANNEL_SHARE]
        held = set(_held)
    query = (
        select(Notification.id, Notification.channel)
        .where(Notification.status == "pending", Notification.next_attempt_at <= now)
        .order_by(Notification.next_attempt_at)
        .limit(THREADS * 4)
    )
    if full:
        query = query.where(Notification.channel.not_in(full))
    with svc.db.read() as session:
        due = [row for row in session.execute(query).all() if row.id not in held]
    picked: list[tuple[str, str]] = []
    ttl = svc.settings.notify_deadline + CLAIM_MARGIN
    for row in due:
        with _lock:
            if _in_flight[row.channel] >= CHANNEL_SHARE:
                continue
            if not client.set(redis_keys.notifying(row.id), "1", nx=True, ex=ttl):
                continue  # another worker is sending it
            _in_flight[row.channel] += 1
            _held.add(row.id)
        picked.append((row.id, row.channel))
    return picked


def _attempt(svc: Services, row_id: str, channel_name: str) -> str:
    try:
        return _attempt_once(svc, row_id)
    except Exception:  # a fault of ours: logged; the row stays due and is tried again
        log.exception("notification %s: the attempt failed", row_id)
        return "error"
    finally:
        with _lock:
            _in_flight[channel_name] -= 1
            _held.discard(row_id)
        try:
            svc.redis.client().delete(redis_keys.notifying(row_id))
        except redis.RedisError:
            pass  # the key lapses on its own


def _attempt_once(svc: Services, row_id: str) -> str:
    with svc.db.read() as session:
        row = session.get(Notification, row_id)
        if row is None or row.status != "pending":
            return "gone"
        attempt = row.attempts + 1
        ch = channel_named(row.channel)
        skip: str | None = None
        message, later = None, None
        if ch is None or not ch.configured(svc.settings):
            skip = "the channel is not configured"
        else:
            try:
                message, skip = _message(svc, session, row, attempt)
            except TryLater as exc:
                later = exc
    if later is not None:
        return _record(
            svc, row_id, attempt, "retry", error=later.message, retry_after=later.retry_after
        )
    if skip is not None or message is None or ch is None:
        return _record(svc, row_id, attempt, "skipped", error=skip)
    try:
        ref = ch.deliver(svc, message)
    except Refused as exc:
        return _record(svc, row_id, attempt, "dead", error=exc.message)
    except ChannelError as exc:
        return _record(
            svc, row_id, attempt, "retry", error=exc.message, retry_after=exc.retry_after
        )
    except Exception as exc:  # a channel's own fault: an attempt all the same, retried
        log.exception("notification %s: %s failed", row_id, ch.name)
        return _record(
            svc, row_id, attempt, "retry", error=f"{type(exc).__name__}: {str(exc)[:300]}"
        )
    return _record(svc, row_id, attempt, "delivered", ref=ref)


def _message(
    svc: Services, session: Session, row: Notification, attempt: int
) -> tuple[Message, str | None]:
    """The Message to send, and why not to send it (None: send)."""
    ids = list(
        session.scalars(
            select(NotificationItem.deferral_id).where(NotificationItem.notification_id == row.id)
        )
    )
    deferrals = (
        session.scalars(
            select(Deferral).where(Deferral.id.in_(ids)).order_by(Deferral.rank.desc())
        ).all()
        if ids
        else []
    )
    moot = None
    if row.kind in (*kinds.ABOUT_WAITING, kinds.DIGEST):
        deferrals = [d for d in deferrals if d.status not in TERMINAL_STATUSES]
        if not deferrals and row.kind != kinds.DIGEST:
            moot = "decided before it went out"
    earlier: tuple[Sent, ...] = ()
    if ids:
        earlier = tuple(
            Sent(n.id, n.kind, n.tier, n.status, n.provider_ref)
            for n in session.scalars(
                select(Notification)
                .join(NotificationItem, NotificationItem.notification_id == Notification.id)
                .where(
                    NotificationItem.deferral_id.in_(ids),
                    Notification.channel == row.channel,
                    Notification.id != row.id,
                )
                .order_by(Notification.created_at)
            ).unique()
        )
    if row.kind == kinds.DECIDED and any(
        s.status == "pending" and s.kind != kinds.DECIDED for s in earlier
    ):
        raise TryLater("an earlier message about it is still going out", retry_after=DECIDED_WAIT)
    recipient = None
    if row.user_id is not None:
        user = session.get(User, row.user_id)
        if user is None or not user.is_active:
            moot = moot or "the person is disabled"
        else:
            recipient = Recipient(user.id, user.username, row.address or "")
    agent_news = None
    if row.agent_id is not None and row.kind in (kinds.AGENT_KILLED, kinds.AGENT_REVIVED):
        agent = session.get(Agent, row.agent_id)
        p = row.payload or {}
        agent_news = AgentNews(
            p.get("slug", agent.slug if agent else "?"),
            p.get("name", agent.name if agent else ""),
            p.get("state", ""),
            p.get("reason", ""),
            p.get("by", ""),
            int(p.get("deferrals_ended", 0)),
        )
    for d in deferrals:  # loaded before the session ends (channels read them after)
        d.agent  # noqa: B018
        d.approvals  # noqa: B018  (Slack's message counts them towards the quorum)
    session.expunge_all()
    message = Message(
        id=row.id,
        kind=row.kind,
        channel=row.channel,
        tier=row.tier,
        attempt=attempt,
        created_at=row.created_at,
        public_url=svc.settings.public_url,
        recipient=recipient,
        deferrals=tuple(deferrals),
        agent=agent_news,
        payload=dict(row.payload or {}),
        earlier=earlier,
    )
    return message, moot


def _record(
    svc: Services,
    row_id: str,
    attempt: int,
    outcome: str,
    *,
    ref: str | None = None,
    error: str | None = None,
    retry_after: float | None = None,
) -> str:
    """Count one attempt (a conditional update: once, whoever else ran it)."""
    now = utcnow()
    schedule = svc.settings.notify_retry_schedule
    status, next_at = outcome, now
    if outcome == "retry":
        if attempt > len(schedule):
            status = "dead"
        else:
            status = "pending"
            next_at = now + _delay(schedule[attempt - 1], retry_after)
    table = Notification.__table__
    with svc.db.write() as session:
        counted = session.execute(
            update(table)
            .where(
                table.c.id == row_id, table.c.status == "pending", table.c.attempts == attempt - 1
            )
            .values(
                attempts=attempt,
                status=status,
                next_attempt_at=next_at,
                last_error=error[:1000] if error else None,
                provider_ref=ref[:500] if ref else None,
                finished_at=None if status == "pending" else now,
            )
        ).rowcount
        channel = session.scalar(select(table.c.channel).where(table.c.id == row_id))
    if counted == 1:
        metrics.count_notification(channel or "?", status if status != "pending" else "retry")
        log.info(
            "notification %s attempt %d: %s%s",
            row_id,
            attempt,
            status,
            f" ({error})" if error else "",
        )
    return status


def _delay(scheduled: int, retry_after: float | None) -> timedelta:
    if retry_after is not None:
        return timedelta(seconds=min(max(retry_after, 1), 86400))
    return timedelta(seconds=scheduled * random.uniform(0.9, 1.1))  # noqa: S311 (jitter)


class NotDead(Exception):
    """Only a dead letter can be retried."""


def retry_dead(svc: Services, row_id: str, by: str, now: datetime | None = None) -> None:
    """Give a dead letter another round of attempts, now (audited)."""
    now = now or utcnow()
    with svc.db.write() as session:
        done = session.execute(
            update(Notification)
            .where(Notification.id == row_id, Notification.status == "dead")
            .values(status="pending", attempts=0, next_attempt_at=now, finished_at=None)
            .execution_options(synchronize_session=False)
        ).rowcount
        if done != 1:
            raise NotDead(row_id)
        row = session.get(Notification, row_id)
        record_event(
            session,
            actor_kind="user",
            actor_id=by,
            event_type="notification.retry_requested",
            payload={"notification_id": row_id, "kind": row.kind, "channel": row.channel},
            at=now,
        )
        session.info["notify"] = True


def send_job() -> int:
    """The rq job a committed change queues (review/notifications/wakeups.py)."""
    return send_due(current_services())
