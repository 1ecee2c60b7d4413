"""Verifying a long log in parallel: ranges of the global seq in separate processes.

Hashing is CPU-bound Python, so threads would share one core; each range is verified in
a process of its own (review/audit/walk.py `main`, which imports nothing of the
database layer, so it starts in a tenth of a second rather than the half second an
import of the service takes) on its own driver connection (PostgreSQL and SQLite files
both allow concurrent readers), and review/audit/verify.py `joined` checks that each
shard's first event in a range follows its last in the ranges before. The caller
verifies the first range itself while the others run. Below MIN_EVENTS_PER_JOB events a
range is not worth a process's start.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

from sqlalchemy.orm import Session

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
    bind = session.get_bind()
    cut = ranges(last, jobs)
    if len(cut) == 1 or bind.url.database in (None, "", ":memory:"):
        batches = iter_hash_batches(session, 1, last)
        return [verify_segment(batches, heads, remember, True, time_text(session))]
    args, kwargs = bind.dialect.create_connect_args(bind.url)
    plain = {k: v for k, v in kwargs.items() if isinstance(v, str | int | float | bool)}
    job = {"dialect": bind.dialect.name, "connect": (list(args), plain)}  # not psycopg's adapters
    later = [
        _start({**job, "first": first, "last": end, "heads": heads, "remember": remember})
        for first, end in cut[1:]
    ]
    try:
        first, end = cut[0]
        batches = iter_hash_batches(session, first, end)
        segments = [verify_segment(batches, heads, remember, True, time_text(session))]
        return segments + [_result(worker) for worker in later]
    finally:  # a problem in this process (or a worker's) leaves no worker behind
        for worker in later:
            if worker.poll() is None:
                worker.kill()
            worker.wait()
            worker.stdout.close()
            worker.stderr.close()


def _start(job: dict) -> subprocess.Popen:
    """A worker for one range, started at once: it reads `job` as soon as it is up."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    worker = subprocess.Popen(
        [sys.executable, "-c", "from review.audit.walk import main; main()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    worker.stdin.write(pickle.dumps(job))
    worker.stdin.close()
    return worker


def _result(worker: subprocess.Popen) -> Segment:
    out = worker.stdout.read()
    err = worker.stderr.read()
    if worker.wait() != 0:
        raise RuntimeError(f"a verify worker failed: {err.decode(errors='replace')[-2000:]}")
    return pickle.loads(out)  # noqa: S301  (our own child's answer)
