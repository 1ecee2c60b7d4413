"""Identifiers: ULIDs (time-ordered, 26 Crockford base-32 characters) with a type prefix."""

from __future__ import annotations

import os
import time

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Two digits (10 bits) at a time: every request gets a ULID as its id, and a loop over
# 26 digits cost it as much as a header lookup.
_DIGIT_PAIRS = [high + low for high in CROCKFORD for low in CROCKFORD]
_PAIR_SHIFTS = tuple(range(120, -1, -10))  # 13 pairs: 130 bits, the top two zero


def ulid(now_ms: int | None = None) -> str:
    """48 bits of milliseconds then 80 random bits, as 26 characters."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join([_DIGIT_PAIRS[(value >> shift) & 1023] for shift in _PAIR_SHIFTS])


def new_deferral_id() -> str:
    return f"dfr_{ulid()}"


def new_event_id() -> str:
    return f"evt_{ulid()}"
