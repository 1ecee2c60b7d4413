"""Verifying a long log in parallel: ranges of the global seq in separate processes.

Hashing is CPU-bound Python, so threads would share one core; each range is verified in
its own process with its own connection (PostgreSQL and SQLite files both allow
concurrent readers), and review/audit/verify.py `joined` checks that each shard's first
event in a range follows its last in the ranges before. The caller verifies the first
range itself while the others run. Below MIN_EVENTS_PER_JOB events a range is not worth
a process's start.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

from sqlalchemy import create_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from review.audit.verify import Segment, iter_hash_batches, time_text, verify_segment

MIN_EVENTS_PER_JOB = 100_000


def ranges(last: int, jobs: int) -> list[tuple[int, int]]:
    """1..last cut into at most `jobs` consecutive ranges of about equal length."""
    jobs = max(1, min(jobs, last // MIN_EVENTS_PER_JOB))
    size = -(-last // jobs)
    return [(first, min(first + size - 1, last)) for first in range(1, last + 1, size)]


def verify_segments_in_parallel(
    session: Session,
    last: int,
    heads: dict[int, tuple[int, str]],
    remember: set[tuple[int, int]],
    jobs: int,
) -> list[Segment]:
    url = session.get_bind().url
    cut = ranges(last, jobs)
    if len(cut) == 1 or url.database in (None, "", ":memory:"):
        batches = iter_hash_batches(session, 1, last)
        return [verify_segment(batches, heads, remember, True, time_text(session))]
    address = url.render_as_string(hide_password=False)
    context = multiprocessing.get_context("spawn")  # no fork of a process holding connections
    with ProcessPoolExecutor(max_workers=len(cut) - 1, mp_context=context) as pool:
        later = [
            pool.submit(verify_range, address, first, end, heads, remember)
            for first, end in cut[1:]
        ]
        first, end = cut[0]
        batches = iter_hash_batches(session, first, end)
        segments = [verify_segment(batches, heads, remember, True, time_text(session))]
        segments += [future.result() for future in later]
    return segments


def verify_range(
    address: str,
    first: int,
    last: int,
    heads: dict[int, tuple[int, str]],
    remember: set[tuple[int, int]],
) -> Segment:
    """One range, in a process of its own: each shard's first link is checked by the join."""
    engine = create_engine(address, poolclass=NullPool)
    try:
        with Session(engine) as session:
            batches = iter_hash_batches(session, first, last)
            return verify_segment(batches, heads, remember, False, time_text(session))
    finally:
        engine.dispose()
