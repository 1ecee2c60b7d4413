"""Verifying a long chain in parallel: ranges of events in separate processes.

Hashing is CPU-bound Python, so threads would share one core; each range is verified in
its own process with its own connection (PostgreSQL and SQLite files both allow
concurrent readers), and review/audit/verify.py `joined` checks that each range names
the last hash of the one before. The caller verifies the first range itself while the
others run. Below MIN_EVENTS_PER_JOB events a range is not worth a process's start.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

from sqlalchemy import create_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from review.audit.hashing import GENESIS_HASH
from review.audit.verify import Segment, iter_hash_inputs, verify_segment

MIN_EVENTS_PER_JOB = 100_000


def ranges(last: int, jobs: int) -> list[tuple[int, int]]:
    """1..last cut into at most `jobs` consecutive ranges of about equal length."""
    jobs = max(1, min(jobs, last // MIN_EVENTS_PER_JOB))
    size = -(-last // jobs)
    return [(first, min(first + size - 1, last)) for first in range(1, last + 1, size)]


def verify_segments_in_parallel(
    session: Session, last: int, remember: set[int], jobs: int
) -> list[Segment]:
    url = session.get_bind().url
    cut = ranges(last, jobs)
    if len(cut) == 1 or url.database in (None, "", ":memory:"):
        rows = iter_hash_inputs(session, 1, last)
        return [verify_segment(rows, 1, GENESIS_HASH, remember)]
    address = url.render_as_string(hide_password=False)
    context = multiprocessing.get_context("spawn")  # no fork of a process holding connections
    with ProcessPoolExecutor(max_workers=len(cut) - 1, mp_context=context) as pool:
        later = [
            pool.submit(verify_range, address, first, end, {s for s in remember if s >= first})
            for first, end in cut[1:]
        ]
        first, end = cut[0]
        segments = [
            verify_segment(iter_hash_inputs(session, first, end), 1, GENESIS_HASH, remember)
        ]
        segments += [future.result() for future in later]
    return segments


def verify_range(address: str, first: int, last: int, remember: set[int]) -> Segment:
    """One range, in a process of its own: the first event's link is checked by the join."""
    engine = create_engine(address, poolclass=NullPool)
    try:
        with Session(engine) as session:
            return verify_segment(iter_hash_inputs(session, first, last), first, None, remember)
    finally:
        engine.dispose()
