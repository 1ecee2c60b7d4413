"""Breakers: the kill switch flips itself when an agent runs away or keeps being refused.

- Flood: more than N deferrals in M seconds (COUNTERSIGN_BREAKER_FLOOD, `N/M`). Each
  deferral request takes a place in a per-agent sorted set in Redis as it is admitted
  (review/intake/admission.py: the same round trip as the rate limit), gives it back if it creates
  nothing, and the deferral it creates is judged by the count it saw.
- Rejections: K rejections by reviewers in a row (COUNTERSIGN_BREAKER_REJECTIONS). A
  per-agent counter in Redis; an approval resets it.

Each agent may override either (its page, admins), `0` turning it off for that agent.
A trip kills the agent as `system:breaker`, with the rule and the numbers as the
reason and an `agent.breaker_tripped` event in the same transaction. Revive resets
both counters. Breakers are a safety net and need Redis: while Redis is down they do
not count (intake and reviewing go on).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

from review import redis_keys
from review.agents.killswitch import Actor, kill
from review.agents.registry import Signer
from review.models import Agent, utcnow
from review.observability.metrics import count_breaker_trip
from review.services import Services
from review.settings import SettingsError, parse_flood

log = logging.getLogger(__name__)

BREAKER = Actor("system", "breaker")


def flood_limit(svc: Services, override: str | None) -> tuple[int, int] | None:
    if override is None:
        return svc.settings.breaker_flood
    try:
        return parse_flood("breaker_flood", override)
    except SettingsError:  # validated when set; never let a bad row stop intake
        return svc.settings.breaker_flood


def rejection_limit(svc: Services, agent: Agent) -> int:
    override = agent.breaker_rejections
    return svc.settings.breaker_rejections if override is None else override


@dataclass(frozen=True)
class Trip:
    rule: str
    reason: str
    numbers: dict[str, int]


def after_intake(svc: Services, agent: Signer, in_window: int | None) -> Trip | None:
    """Judge a created deferral by the flood window it was counted in (intake/admission.py)."""
    limit = flood_limit(svc, agent.breaker_flood)
    if limit is None or in_window is None:
        return None
    most, window = limit
    if in_window <= most:
        return None
    trip = Trip(
        "flood",
        f"breaker: flood, {in_window} deferrals in {window} s (more than {most} trips it)",
        {"deferrals": in_window, "window_seconds": window, "limit": most},
    )
    _trip(svc, agent.slug, trip)
    return trip


def after_decision(svc: Services, slug: str, outcome: str, limit: int) -> Trip | None:
    """Count a reviewer's decision; trip after `limit` rejections in a row."""
    if outcome not in ("approved", "rejected"):
        return None
    key = redis_keys.rejections(slug)
    try:
        client = svc.redis.client()
        if outcome == "approved":
            client.delete(key)
            return None
        streak = int(client.incr(key))
        client.expire(key, 30 * 86400)
    except redis.RedisError as exc:
        log.warning("rejection breaker not counted for %s (%s)", slug, exc)
        return None
    if not limit or streak < limit:
        return None
    trip = Trip(
        "rejections",
        f"breaker: rejections, {streak} rejected in a row ({limit} trips it)",
        {"rejections_in_a_row": streak, "limit": limit},
    )
    _trip(svc, slug, trip)
    return trip


def _trip(svc: Services, slug: str, trip: Trip) -> None:
    event = {
        "actor_kind": BREAKER.kind,
        "actor_id": BREAKER.name,
        "event_type": "agent.breaker_tripped",
        "agent": slug,
        "deferral_id": None,
        "payload": {"rule": trip.rule, **trip.numbers},
        "at": utcnow(),
    }
    flip = kill(svc, slug, BREAKER, trip.reason, extra_events=[event])
    if flip.changed:
        count_breaker_trip(trip.rule)
        log.warning("agent %s stopped by its %s breaker: %s", slug, trip.rule, trip.reason)
