"""How long an intake holds SQLite's writer lock: the time every other writer waits.

    .venv/bin/python bench/writer_lock.py [--requests 1000]

In-process and serial, like bench/cpu.py: signed deferrals (bench/intake.py's body)
handed to the app's WSGI callable one after another, on a fresh SQLite database and
the real Redis. review/db.py's WriterLock is wrapped to time each hold: the thread's
CPU while holding it (what moving work out of the lock cuts; the load of other
processes moves it least) and the wall time (adds the commit's fsync, a checkpoint if
one runs inside the commit, and whatever the machine's load adds). Medians, p90, p99
and the longest, and the CPU per request, after 100 requests of warm-up.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REDIS, database  # noqa: E402
from bench.cpu import PATH, environ, serve  # noqa: E402
from bench.intake import BODY  # noqa: E402
from review import db as db_module  # noqa: E402
from review.signing import sign_headers  # noqa: E402

WARM_UP = 100


def spread(values: list[float]) -> str:
    ordered = sorted(values)

    def at(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))]

    return (
        f"median {statistics.median(ordered):6.3f}  p90 {at(0.9):6.3f}  "
        f"p99 {at(0.99):6.3f}  max {ordered[-1]:7.3f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    held_cpu: list[float] = []
    held_wall: list[float] = []
    original = db_module.WriterLock.held

    @contextlib.contextmanager
    def timed(self):
        with original(self):
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                yield
            finally:
                held_wall.append((time.perf_counter() - wall) * 1000)
                held_cpu.append((time.thread_time() - cpu) * 1000)

    db_module.WriterLock.held = timed
    from review.agents.registry import create_agent
    from review.app_factory import create_app
    from review.migrate import upgrade
    from review.users import create_user

    with database("sqlite") as url, tempfile.TemporaryDirectory(prefix="cs-lock-") as folder:
        app = create_app(
            {
                "database_url": url,
                "redis_url": REDIS,
                "instance_dir": folder,
                "secret_key": "bench-secret-key-" + "x" * 32,
                "agent_rate": 1000000,
                "agent_max_pending": 1000000,
                "breaker_flood": "1000000/60",
            }
        )
        svc = app.extensions["countersign"]
        upgrade(svc.db)
        with svc.db.write() as session:
            create_user(session, "owner", "admin", "bench-password")
            secret = create_agent(session, svc.box, "bench-bot", ["owner"]).secret
        raw = json.dumps(BODY).encode()
        environs = [
            environ(
                PATH,
                "POST",
                raw,
                {
                    **sign_headers(secret, f"msg_{uuid.uuid4().hex}", raw),
                    "Content-Type": "application/json",
                },
            )
            for _ in range(args.requests + WARM_UP)
        ]
        serve(app, environs[:WARM_UP], 202)
        held_cpu.clear()
        held_wall.clear()
        started = time.process_time()
        serve(app, environs[WARM_UP:], 202)
        per_request = (time.process_time() - started) * 1000 / args.requests
        svc.close()
    print(f"{args.requests} intakes, SQLite, serial: {per_request:.3f} ms CPU per request")
    print(f"  writer lock held, thread CPU: {spread(held_cpu)}")
    print(f"  writer lock held, wall:       {spread(held_wall)}")


if __name__ == "__main__":
    main()
