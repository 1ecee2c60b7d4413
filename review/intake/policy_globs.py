"""Globs compiled once: a rule's patterns become one regular expression, cached.

A policy of a few hundred rules asks the same few hundred pattern lists for every
deferral; fnmatch compiles each pattern once too, but then matches them one by one in
Python. One alternation per list answers the common case (no match) in one call to the
regex engine, and finds which key matched without a loop over the patterns.
"""

from __future__ import annotations

import functools
import re
from fnmatch import fnmatchcase, translate


@functools.lru_cache(maxsize=8192)
def any_of(patterns: tuple[str, ...]) -> re.Pattern[str]:
    """A regex that matches what any of the fnmatch globs matches (case-sensitive)."""
    if not patterns:
        return re.compile(r"(?!)")
    return re.compile("|".join(f"(?:{translate(p)})" for p in patterns))


def first_match(text: str, patterns: list[str]) -> str | None:
    """The first glob (in order) that `text` matches, or None."""
    if not any_of(tuple(patterns)).match(text):
        return None
    return next(p for p in patterns if fnmatchcase(text, p))


@functools.lru_cache(maxsize=8192)
def lowered(patterns: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(p.lower() for p in patterns)


@functools.lru_cache(maxsize=8192)
def folded(patterns: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(p.casefold() for p in patterns)
