"""ULIDs (review/ids.py): request ids, deferral and event ids."""

from __future__ import annotations

import os

from review.ids import CROCKFORD, ulid


def digit_by_digit(value: int) -> str:
    """The reference encoding: 26 Crockford digits of 5 bits, most significant first."""
    return "".join(CROCKFORD[(value >> (5 * i)) & 31] for i in range(25, -1, -1))


def test_it_encodes_milliseconds_then_randomness_as_26_crockford_digits(monkeypatch):
    for ms, random in [
        (0, b"\0" * 10),
        (2**48 - 1, b"\xff" * 10),
        (1_764_547_200_000, b"\x5a" * 10),
    ]:
        monkeypatch.setattr(os, "urandom", lambda n, random=random: random)
        expected = digit_by_digit((ms << 80) | int.from_bytes(random, "big"))
        assert ulid(ms) == expected and len(expected) == 26


def test_ids_made_later_sort_later():
    first, second = ulid(1_000), ulid(1_001)
    assert first < second and set(first + second) <= set(CROCKFORD)
