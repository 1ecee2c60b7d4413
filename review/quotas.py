"""Per-agent request rate, counted in Redis so every web worker shares one limit."""

from __future__ import annotations

import logging
import time

import redis
from redis.commands.core import Script

from review.api.errors import ApiError

log = logging.getLogger(__name__)

_COUNT_THIS_SECOND = Script(
    None,  # not bound to a client: each call names its own
    b"local n = redis.call('INCR', KEYS[1]) "
    b"if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end "
    b"return n",
)


def check_rate(client: redis.Redis, agent: str, per_second: int, now: float | None = None) -> None:
    """Raise 429 once an agent has made more than `per_second` requests this second.

    A one-second window counter (INCR, and EXPIRE on the first: one script, one round
    trip). If Redis is down the
    request is let through: the database, not Redis, protects what matters, and an
    outage of the cache must not stop intake.
    """
    if per_second <= 0:
        return
    second = int(time.time() if now is None else now)
    key = f"countersign:rate:{agent}:{second}"
    try:
        count = _COUNT_THIS_SECOND(keys=[key], args=[2], client=client)
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
