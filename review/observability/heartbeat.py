"""The worker's heartbeat: each worker process writes the time, every maintenance tick.

The beat goes to Redis (a sorted set, review/redis_keys.py WORKER_HEARTBEATS), which
the web processes reach wherever the worker runs. It is written by the loop that
expires deferrals, returns lapsed claims and relays due callbacks (queue/maintenance.py
`Ticker`), so a fresh beat says that loop is turning; /readyz reports the worker stale
when the newest beat is older than COUNTERSIGN_WORKER_STALE_AFTER, and /metrics shows
its age.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

import redis

from review.redis_keys import WORKER_HEARTBEATS

FORGET_AFTER = 86400  # a worker silent this long is dropped from the set


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def beat(client: redis.Redis, name: str, now: float | None = None) -> None:
    """Write this worker's heartbeat (one round trip); RedisError when Redis is down."""
    now = time.time() if now is None else now
    pipe = client.pipeline(transaction=False)
    pipe.zadd(WORKER_HEARTBEATS, {name: now})
    pipe.zremrangebyscore(WORKER_HEARTBEATS, "-inf", now - FORGET_AFTER)
    pipe.execute()


@dataclass(frozen=True)
class Heartbeats:
    newest: float | None  # unix time of the newest beat; None: no worker has beaten
    fresh_workers: int  # workers whose last beat is within the threshold
    stale_after: int
    now: float

    @property
    def age(self) -> float | None:
        return None if self.newest is None else max(self.now - self.newest, 0.0)

    @property
    def state(self) -> str:
        """ok, stale (the newest beat is too old) or missing (no worker ever beat)."""
        if self.newest is None:
            return "missing"
        return "ok" if self.age <= self.stale_after else "stale"  # type: ignore[operator]


def read(client: redis.Redis, stale_after: int, now: float | None = None) -> Heartbeats:
    """The newest beat and how many workers are fresh (one round trip); RedisError if down."""
    now = time.time() if now is None else now
    pipe = client.pipeline(transaction=False)
    pipe.zrevrange(WORKER_HEARTBEATS, 0, 0, withscores=True)
    pipe.zcount(WORKER_HEARTBEATS, now - stale_after, "+inf")
    newest, fresh = pipe.execute()
    return Heartbeats(newest[0][1] if newest else None, int(fresh), stale_after, now)
