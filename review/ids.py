"""Identifiers: ULIDs (time-ordered, 26 Crockford base-32 characters) with a type prefix."""

from __future__ import annotations

import os
import time

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ulid(now_ms: int | None = None) -> str:
    """48 bits of milliseconds then 80 random bits, as 26 characters."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_deferral_id() -> str:
    return f"dfr_{ulid()}"


def new_event_id() -> str:
    return f"evt_{ulid()}"
