"""How long an intake or a decision holds SQLite's writer lock: what every other writer waits.

    .venv/bin/python bench/writer_lock.py [--kind intake|decision] [--requests 1000]
        [--undo-seconds S]

In-process and serial, like bench/cpu.py: signed deferrals (bench/intake.py's body)
handed to the app's WSGI callable one after another, on a fresh SQLite database and
the real Redis. review/db.py's WriterLock is wrapped to time each hold: the thread's
CPU while holding it (what moving work out of the lock cuts; the load of other
processes moves it least) and the wall time (adds the commit's fsync, a checkpoint if
one runs inside the commit, and whatever the machine's load adds), and the COMMIT's own
wall time (DefaultDialect.do_commit wrapped). Medians, p90, p99 and the longest, and the
CPU per request, after 100 requests of warm-up.

`--busy-threads N` runs N threads of pure Python beside (as a gunicorn gthread worker's
other requests are while they render): the lock's holder releases the GIL in every
SQLite call and waits up to the interpreter's switch interval (`--switch-interval MS`,
Python's default 5 ms) to get it back, while every other writer waits on the lock.

`--kind decision`: a reviewer's decisions instead, as bench/decision_cost.py makes them
(POST /batch/<id>/approve as htmx through Flask's test client, Start batch for each five
cards), `--requests` deferrals of which the first 100 are decided as warm-up; only the
holds taken inside a decision's request are counted (not Start batch's), and the CPU
per decision is this process's while deciding. Uses BENCH_REDIS_URL.

`--undo-seconds S` (with `--kind decision`): each decision is held for its undo window
(the product's default, COUNTERSIGN_UNDO_SECONDS=5); once a batch is decided, its held
decisions are taken into effect in-process as the worker's job does (taking_effect.py
take_effect_due with a clock S + 1 s ahead), and the holds taken then are printed apart:
what the worker holds the lock for, per decision taken into effect.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy.engine.default import DefaultDialect  # noqa: E402

from bench.common import database  # noqa: E402
from bench.cpu import intake_app, serve, signed_intakes  # noqa: E402
from review import db as db_module  # noqa: E402

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
    parser.add_argument("--kind", choices=("intake", "decision"), default="intake")
    parser.add_argument("--busy-threads", type=int, default=0, metavar="N")
    parser.add_argument("--switch-interval", type=float, default=None, metavar="MS")
    parser.add_argument("--undo-seconds", type=int, default=0, metavar="S")
    args = parser.parse_args()
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval / 1000)
    stop = threading.Event()
    for _ in range(args.busy_threads):
        threading.Thread(target=_busy, args=(stop,), daemon=True).start()
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
    commits: list[float] = []
    do_commit = DefaultDialect.do_commit

    def timed_commit(self, dbapi_connection):
        start = time.perf_counter()
        try:
            do_commit(self, dbapi_connection)
        finally:
            commits.append((time.perf_counter() - start) * 1000)

    DefaultDialect.do_commit = timed_commit
    if args.kind == "decision":
        decisions(args.requests, held_cpu, held_wall, commits, args.undo_seconds)
        return
    with database("sqlite") as url, tempfile.TemporaryDirectory(prefix="cs-lock-") as folder:
        app, svc, secret = intake_app(url, folder)
        environs = signed_intakes(secret, args.requests + WARM_UP)
        serve(app, environs[:WARM_UP], 202)
        held_cpu.clear()
        held_wall.clear()
        commits.clear()
        started = time.process_time()
        serve(app, environs[WARM_UP:], 202)
        per_request = (time.process_time() - started) * 1000 / args.requests
        svc.close()
    print(f"{args.requests} intakes, SQLite, serial: {per_request:.3f} ms CPU per request")
    print(f"  writer lock held, thread CPU: {spread(held_cpu)}")
    print(f"  writer lock held, wall:       {spread(held_wall)}")
    print(f"  of which the COMMIT, wall:    {spread(commits)}")


def _busy(stop: threading.Event) -> None:
    """Pure Python, as a gthread worker's other threads are while they render a page:
    it holds the GIL until the interpreter's switch interval makes it let go."""
    while not stop.is_set():
        sum(i * i for i in range(2000))


def decisions(
    n: int, held_cpu: list[float], held_wall: list[float], commits: list[float], undo: int = 0
) -> None:
    """`n` decisions after WARM_UP more, each hold inside a decision's request counted;
    with `undo`, held for the window, and the holds of taking them into effect apart."""
    from datetime import timedelta

    from bench.decision_cost import CARD, HELD, build, defer_all, logged_in
    from review.models import utcnow
    from review.reviewing.taking_effect import take_effect_due

    answer = HELD if undo else "Approved."
    effect_cpu: list[float] = []
    effect_wall: list[float] = []
    effect_commits: list[float] = []
    with database("sqlite") as url, tempfile.TemporaryDirectory(prefix="cs-lock-") as folder:
        app, svc, secret = build(url, folder, undo)
        defer_all(app, secret, n + WARM_UP)
        client, csrf, headers = logged_in(app)
        cpu_per: list[float] = []
        counted_cpu: list[float] = []
        counted_wall: list[float] = []
        counted_commits: list[float] = []
        done = 0
        while True:
            page = client.post("/batch/start", data={"csrf_token": csrf}, follow_redirects=True)
            ids = list(dict.fromkeys(CARD.findall(page.get_data(as_text=True))))
            if not ids:
                break
            for d_id in ids:
                held_cpu.clear()
                held_wall.clear()
                commits.clear()
                cpu = time.process_time()
                r = client.post(
                    f"/batch/{d_id}/approve",
                    data={"csrf_token": csrf, "seen_ms": "4000"},
                    headers=headers,
                )
                spent = (time.process_time() - cpu) * 1000
                assert answer in r.get_data(as_text=True), r.get_data(as_text=True)[:300]
                done += 1
                if done > WARM_UP:
                    cpu_per.append(spent)
                    counted_cpu.extend(held_cpu)
                    counted_wall.extend(held_wall)
                    counted_commits.extend(commits)
            if undo:  # the batch's held decisions taken into effect, as the worker would
                held_cpu.clear()
                held_wall.clear()
                commits.clear()
                with app.app_context():
                    take_effect_due(svc, utcnow() + timedelta(seconds=undo + 1))
                if done > WARM_UP:
                    effect_cpu.extend(held_cpu)
                    effect_wall.extend(held_wall)
                    effect_commits.extend(commits)
        svc.close()
    print(
        f"{len(cpu_per)} decisions, SQLite, serial: {statistics.mean(cpu_per):.3f} ms CPU per "
        f"decision (mean), {statistics.median(cpu_per):.3f} (p50); "
        f"{len(counted_cpu) / len(cpu_per):.2f} holds each"
    )
    print(f"  writer lock held, thread CPU: {spread(counted_cpu)}")
    print(f"  writer lock held, wall:       {spread(counted_wall)}")
    print(f"  of which the COMMIT, wall:    {spread(counted_commits)}")
    if undo:
        print(f"held for {undo} s, then taken into effect ({len(effect_cpu)} holds):")
        print(f"  writer lock held, thread CPU: {spread(effect_cpu)}")
        print(f"  writer lock held, wall:       {spread(effect_wall)}")
        print(f"  of which the COMMIT, wall:    {spread(effect_commits)}")


if __name__ == "__main__":
    main()
