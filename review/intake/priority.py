"""Priority: which pending deferral a reviewer should see first.

    priority(t) = score
                + (t - created_at) / AGE            one point per AGE seconds waited
                + (D - (expires_at - t)) / EXPIRY    one point per EXPIRY seconds less
                                                     time left than the default expiry D

with AGE = COUNTERSIGN_PRIORITY_AGE_SECONDS_PER_POINT (600) and
EXPIRY = COUNTERSIGN_PRIORITY_EXPIRY_SECONDS_PER_POINT (3600). So risk counts most,
a deferral that has waited gains a point every ten minutes, and one that will expire
soon is pulled forward.

Every term grows with t at the same rate for every deferral, so their order never
changes as time passes: the part that does not depend on t is stored as `rank`
(thousandths of a point) and the queue reads `ORDER BY rank DESC` from an index,
without recomputing anything. `priority` in the API is the value at intake, clamped
to 0..100.
"""

from __future__ import annotations

from datetime import datetime


def _epoch(at: datetime) -> float:
    return at.timestamp()


def rank(
    score: int,
    created_at: datetime,
    expires_at: datetime,
    *,
    default_expires_in: int,
    age_seconds_per_point: int,
    expiry_seconds_per_point: int,
) -> int:
    """The time-independent part of priority(t), in thousandths of a point."""
    constant = (
        score
        - _epoch(created_at) / age_seconds_per_point
        + (default_expires_in - _epoch(expires_at)) / expiry_seconds_per_point
    )
    return round(constant * 1000)


def priority_at(
    at: datetime,
    rank_value: int,
    *,
    age_seconds_per_point: int,
    expiry_seconds_per_point: int,
) -> float:
    """priority(t) from a stored rank."""
    growth = _epoch(at) / age_seconds_per_point + _epoch(at) / expiry_seconds_per_point
    return rank_value / 1000 + growth


def clamp_priority(value: float) -> int:
    return max(0, min(100, round(value)))
