"""Admission: an agent's request against its rate limit and its flood window, in Redis.

Counted in Redis so every web worker shares one limit, and in one script (one round
trip) per request:

- the rate (COUNTERSIGN_AGENT_RATE): a one-second window counter (INCR, and EXPIRE on
  the first); over N this second, the request is refused with 429;
- otherwise the request takes its place in the agent's flood window (a sorted set of
  webhook-ids by arrival, trimmed to the window) and learns how many are in it, so the
  flood breaker (review/agents/breakers.py) can judge the deferral the moment it is created.
  A webhook-id already in the window (a retry) takes no second place; a request that
  creates nothing gives back the place it took (`withdraw`).

If Redis is down the request is let through uncounted: the database, not Redis,
protects what matters, and an outage of the cache must not stop intake.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import redis
from redis.commands.core import Script

from review import pooled_redis, redis_keys
from review.errors import RateLimited
from review.services import Services

log = logging.getLogger(__name__)

# KEYS: rate counter, flood window. ARGV: rate limit (0: none), now, webhook-id, window
# seconds (0: no flood rule). Returns {requests this second, deferrals in the window
# (-1: not counted), 1 if this request took a new place}.
_ADMIT = Script(
    None,  # not bound to a client: each call names its own
    b"""
    local n = redis.call('INCR', KEYS[1])
    if n == 1 then redis.call('EXPIRE', KEYS[1], 2) end
    local limit, window = tonumber(ARGV[1]), tonumber(ARGV[4])
    if (limit > 0 and n > limit) or window == 0 then return {n, -1, 0} end
    local placed = redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[3])
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', tonumber(ARGV[2]) - window)
    redis.call('EXPIRE', KEYS[2], window + 1)
    return {n, redis.call('ZCARD', KEYS[2]), placed}
    """,
)
_WITHDRAW = Script(None, b"return redis.call('ZREM', KEYS[1], ARGV[1])")


@dataclass(frozen=True)
class Admission:
    slug: str
    webhook_id: str
    in_window: int | None  # deferrals in the flood window, this one included; None: uncounted
    placed: bool  # this request added its webhook-id to the window


def admit(
    svc: Services,
    slug: str,
    webhook_id: str,
    *,
    per_second: int,
    flood_window: int | None,
    now: float | None = None,
) -> Admission:
    """Count the request; raise RateLimited over `per_second` this second (0: no limit)."""
    now = time.time() if now is None else now
    keys = [redis_keys.rate(slug, int(now)), redis_keys.flood(slug)]
    try:
        count, in_window, placed = pooled_redis.run_script(  # as _ADMIT(...), leaner
            svc.redis.client(),
            _ADMIT,
            keys,
            [max(per_second, 0), now, webhook_id, flood_window or 0],
        )
    except redis.RedisError as exc:
        log.warning("rate and flood not counted for %s: redis unavailable (%s)", slug, exc)
        return Admission(slug, webhook_id, None, placed=False)
    if per_second > 0 and count > per_second:
        raise RateLimited(f"more than {per_second} requests per second", retry_after=1)
    return Admission(slug, webhook_id, None if in_window < 0 else in_window, placed=bool(placed))


def withdraw(svc: Services, admission: Admission) -> None:
    """The request created nothing: give back the place it took in the flood window."""
    if not admission.placed:
        return
    try:
        pooled_redis.run_script(
            svc.redis.client(),
            _WITHDRAW,
            [redis_keys.flood(admission.slug)],
            [admission.webhook_id],
        )
    except redis.RedisError as exc:
        log.warning("flood window of %s not corrected (%s)", admission.slug, exc)
