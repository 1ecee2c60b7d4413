"""Per-agent request rate, counted in Redis so every web worker shares one limit."""

from __future__ import annotations

import logging
import time

import redis

from review.api.errors import ApiError

log = logging.getLogger(__name__)


def check_rate(client: redis.Redis, agent: str, per_second: int, now: float | None = None) -> None:
    """Raise 429 once an agent has made more than `per_second` requests this second.

    A one-second window counter (INCR + EXPIRE in one round trip). If Redis is down the
    request is let through: the database, not Redis, protects what matters, and an
    outage of the cache must not stop intake.
    """
    if per_second <= 0:
        return
    second = int(time.time() if now is None else now)
    key = f"countersign:rate:{agent}:{second}"
    try:
        pipe = client.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, 2)
        count, _ = pipe.execute()
    except redis.RedisError as exc:
        log.warning("rate limit not checked for %s: redis unavailable (%s)", agent, exc)
        return
    if count > per_second:
        raise ApiError(
            429,
            "rate_limited",
            f"more than {per_second} requests per second",
            headers={"Retry-After": "1"},
        )
