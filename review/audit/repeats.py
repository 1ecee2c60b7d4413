"""Repeated events, bounded: the first of a kind in a minute is written in full, the rest
are counted, and each minute's count becomes one event.

A flood of refused requests (or of refused execution reports) must not grow the audit
log, or a page that lists it, without bound. A *kind* is what makes two events the same
here: an agent and an error code, or a deferral and the rule a report broke. The counts
live in Redis; once a minute has ended, the next event written in full, or the worker's
maintenance tick (queue/maintenance.py), writes one summary event per kind and minute
with the count. When Redis is down each process writes the first of a kind in a minute
itself and drops the rest: nothing but the count is lost.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import redis
from redis.commands.core import Script

from review import redis_keys
from review.audit.chain import record_events

if TYPE_CHECKING:
    from review.services import Services

log = logging.getLogger(__name__)

COUNTS_TTL_SECONDS = 86400  # counts nobody flushed for a day are dropped with their key


@dataclass(frozen=True)
class Kind:
    """What makes repeated events the same, and the summary event that counts them."""

    summary_type: str  # e.g. request.refused_repeated
    agent: str
    deferral_id: str | None
    about: dict[str, Any] = field(default_factory=dict)  # in the summary's payload

    def identity(self) -> str:
        return json.dumps(
            [self.summary_type, self.agent, self.deferral_id, self.about],
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_identity(cls, text: str) -> Kind:
        summary_type, agent, deferral_id, about = json.loads(text)
        return cls(summary_type, agent, deferral_id, about)


def minute_of(at: float) -> int:
    return int(at // 60)


# KEYS: first-of-minute flag, the minute's counts, the minutes with counts. ARGV: identity,
# minute, 1 to try to be the first (0: count only), counts' time to live. 1: the first.
_FIRST_OR_COUNT = Script(
    None,
    b"""
    if ARGV[3] == '1' and redis.call('SET', KEYS[1], '1', 'NX', 'EX', 180) then return 1 end
    redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
    redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4]))
    redis.call('ZADD', KEYS[3], tonumber(ARGV[2]), ARGV[2])
    return 0
    """,
)
# KEYS: one minute's counts, the minutes with counts. ARGV: the minute. Takes them, once.
_TAKE = Script(
    None,
    b"""
    local counts = redis.call('HGETALL', KEYS[1])
    redis.call('DEL', KEYS[1])
    redis.call('ZREM', KEYS[2], ARGV[1])
    return counts
    """,
)


class _LocalFirsts:
    """Without Redis: the kinds this process has written in full this minute."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._minute = -1
        self._seen: set[str] = set()

    def first(self, identity: str, minute: int) -> bool:
        with self._lock:
            if minute != self._minute:
                self._minute, self._seen = minute, set()
            if identity in self._seen:
                return False
            self._seen.add(identity)
            return True


_local = _LocalFirsts()


def first_this_minute(svc: Services, kind: Kind, at: float | None = None) -> bool:
    """True for the first event of `kind` this minute (write it in full); otherwise the
    event is counted towards the minute's summary, and False."""
    return _first_or_count(svc, kind, time.time() if at is None else at, try_first=True)


def count(svc: Services, kind: Kind, at: float | None = None) -> None:
    """Count one event of `kind` towards its minute's summary, writing nothing now."""
    _first_or_count(svc, kind, time.time() if at is None else at, try_first=False)


def _first_or_count(svc: Services, kind: Kind, at: float, *, try_first: bool) -> bool:
    identity = kind.identity()
    minute = minute_of(at)
    digest = hashlib.sha256(identity.encode()).hexdigest()[:32]
    try:
        first = _FIRST_OR_COUNT(
            keys=[
                redis_keys.repeat_first(digest, minute),
                redis_keys.repeat_counts(minute),
                redis_keys.REPEAT_MINUTES,
            ],
            args=[identity, minute, 1 if try_first else 0, COUNTS_TTL_SECONDS],
            client=svc.redis.client(),
        )
    except redis.RedisError as exc:
        log.warning("repeated %s not counted: Redis is unavailable (%s)", kind.summary_type, exc)
        return try_first and _local.first(identity, minute)
    return bool(first)


def flush_due(svc: Services, now: float | None = None) -> int:
    """Write the summaries of every minute that has ended; the number of events written.

    Each minute's counts are taken from Redis in one step, so two flushers never write
    the same count; if the write fails they are given back for the next flush.
    """
    current = minute_of(time.time() if now is None else now)
    client = svc.redis.client()
    written = 0
    for raw in client.zrangebyscore(redis_keys.REPEAT_MINUTES, "-inf", current - 1):
        minute = int(raw)
        flat = _TAKE(
            keys=[redis_keys.repeat_counts(minute), redis_keys.REPEAT_MINUTES],
            args=[minute],
            client=client,
        )
        counts = {flat[i].decode(): int(flat[i + 1]) for i in range(0, len(flat), 2)}
        if not counts:
            continue
        try:
            _write(svc, minute, counts)
        except Exception:
            _give_back(client, minute, counts)
            raise
        written += len(counts)
    return written


def flush_quietly(svc: Services) -> None:
    """`flush_due` for a request's path: a failure is logged, never the request's."""
    try:
        flush_due(svc)
    except redis.RedisError as exc:  # the maintenance tick tries again
        log.warning("repeated events' counts not written: Redis is unavailable (%s)", exc)
    except Exception:
        log.exception("writing repeated events' counts failed")


def _write(svc: Services, minute: int, counts: dict[str, int]) -> None:
    started = datetime.fromtimestamp(minute * 60, UTC).strftime("%Y-%m-%dT%H:%MZ")
    events = []
    for identity, n in sorted(counts.items()):
        kind = Kind.from_identity(identity)
        events.append(
            {
                "actor_kind": "agent",
                "actor_id": kind.agent,
                "event_type": kind.summary_type,
                "agent": kind.agent,
                "deferral_id": kind.deferral_id,
                "payload": {**kind.about, "count": n, "minute": started},
                "at": None,
            }
        )
    with svc.db.write() as session:
        record_events(session, events)


def _give_back(client: redis.Redis, minute: int, counts: dict[str, int]) -> None:
    try:
        pipe = client.pipeline()
        for identity, n in counts.items():
            pipe.hincrby(redis_keys.repeat_counts(minute), identity, n)
        pipe.expire(redis_keys.repeat_counts(minute), COUNTS_TTL_SECONDS)
        pipe.zadd(redis_keys.REPEAT_MINUTES, {str(minute): minute})
        pipe.execute()
    except redis.RedisError:
        log.warning("lost the counts of %d repeated kinds for minute %d", len(counts), minute)
