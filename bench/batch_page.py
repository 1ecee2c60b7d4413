"""Where a batch's time goes on the server: Start batch with its page, then the decisions.

    .venv/bin/python bench/batch_page.py [--db sqlite|postgres|both] [--batches 30]
        [--profile] [--before-tree DIR]

The app runs in this process (Flask's test client: no HTTP, so the figures are the
server's own time) on a fresh database and BENCH_REDIS_URL. A reviewer clears
`--batches` batches of 5: POST /batch/start with `answer=page`, as static/review.js
sends it (and, where it answers with a redirect, as before commit 66900de, the GET
/batch it leads to), then five htmx approvals. Printed per step, medians: the wall
time, the CPU time of this thread (the test client runs the request in it, so this is
the request's own CPU, which other load on the machine does not inflate), the part of
that CPU spent rendering templates, the write transactions' time (on SQLite the writer
lock's hold: review/db.py WriterLock; wall and CPU) and the SQL statements sent (a
`before_cursor_execute` listener on the engine). `--profile` adds cProfile's top
functions for Start batch and its page.

`--before-tree DIR` runs the same bench on another checkout (`git archive COMMIT | tar
-x -C DIR`) in a child process, alternating with this one database by database, and
prints the two side by side with their ratios: same run, same load. (`--tree DIR`, which
the child gets, imports the app from DIR instead of this checkout.)
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import pstats
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()


def _tree() -> str:
    """The checkout to import the app from: --tree DIR, else this one."""
    if "--tree" in sys.argv:
        return str(Path(sys.argv[sys.argv.index("--tree") + 1]).resolve())
    return str(HERE.parent.parent)


sys.path.insert(0, _tree())

import flask.templating  # noqa: E402
from sqlalchemy import event  # noqa: E402

from bench.common import REDIS, database  # noqa: E402
from review.agents.registry import create_agent  # noqa: E402
from review.app_factory import create_app  # noqa: E402
from review.db import Database  # noqa: E402
from review.migrate import upgrade  # noqa: E402
from review.users import create_user  # noqa: E402
from tests.helpers import AgentClient, logged_in, refund  # noqa: E402

CARD = re.compile(r'id="card-(dfr_[0-9A-Z]+)"')
BATCH = 5
COLUMNS = ("wall", "cpu", "render_cpu", "write_wall", "write_cpu", "statements", "in_writes")


class Meter:
    """Since the last `reset`: statements sent (and how many of them inside write
    transactions), CPU spent rendering, and the time (wall and CPU) inside write
    transactions (`Database.write`: on SQLite, the writer lock)."""

    def __init__(self, db) -> None:
        self.reset()
        self.writing = False
        event.listen(db.engine, "before_cursor_execute", self._statement)
        render = flask.templating._render

        def timed_render(*args, **kwargs):
            start = time.thread_time()
            try:
                return render(*args, **kwargs)
            finally:
                self.render_cpu += (time.thread_time() - start) * 1000

        flask.templating._render = timed_render
        write = db.write

        @contextlib.contextmanager
        def timed_write(*args, **kwargs):
            with write(*args, **kwargs) as session:
                wall, cpu = time.perf_counter(), time.thread_time()
                self.writing = True
                try:
                    yield session
                finally:  # the commit is on the way out of `write`: counted below
                    self._open = (wall, cpu)
            self.writing = False
            self.write_wall += (time.perf_counter() - self._open[0]) * 1000
            self.write_cpu += (time.thread_time() - self._open[1]) * 1000

        db.write = timed_write

    def _statement(self, *_args) -> None:
        self.statements += 1
        self.in_writes += self.writing

    def reset(self) -> None:
        self.statements, self.in_writes = 0, 0
        self.render_cpu, self.write_wall, self.write_cpu = 0.0, 0.0, 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="sqlite")
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--before-tree", help="another checkout, run alongside")
    parser.add_argument("--tree", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    kinds = ("sqlite", "postgres") if args.db == "both" else (args.db,)
    for kind in kinds:
        before = _child(args.before_tree, kind, args.batches) if args.before_tree else None
        now = bench(kind, args)
        if args.json:
            print(json.dumps(now))
            continue
        print(f"{kind}, {args.batches} batches of {BATCH} (medians, the first 3 left out):")
        _print(now, before)


def _child(tree: str, kind: str, batches: int) -> dict:
    """The same bench on `tree`, in a process of its own (its own imports)."""
    out = subprocess.run(
        [
            sys.executable,
            str(HERE),
            "--tree",
            tree,
            "--db",
            kind,
            "--batches",
            str(batches),
            "--json",
        ],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": tree},
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def _print(now: dict, before: dict | None) -> None:
    def row(name: str, m: dict) -> str:
        return (
            f"{name:<18} {m['wall']:7.2f} ms wall  {m['cpu']:6.2f} ms CPU "
            f"(rendering {m['render_cpu']:5.2f})  writes {m['write_wall']:5.2f} ms wall "
            f"{m['write_cpu']:5.2f} CPU  {m['statements']:3d} statements "
            f"({m.get('in_writes', '?')} in writes)"
        )

    for name, m in now.items():
        if before is not None and name in before:
            b = before[name]
            print("  before " + row(name, b))
            print("  now    " + row(name, m))
            ratios = ", ".join(
                f"{c} {m[c] / b[c]:.2f}" for c in ("cpu", "render_cpu", "write_cpu") if b[c]
            )
            print(f"         now/before: {ratios}")
        else:
            print("  " + row(name, m))
    if before is not None:
        for name in before.keys() - now.keys():
            print("  before only: " + row(name, before[name]))


def bench(kind: str, args) -> dict:
    with database(kind) as url, tempfile.TemporaryDirectory(prefix="cs-") as instance:
        db = Database(url)
        upgrade(db)
        db.dispose()
        app = create_app(
            {
                "database_url": url,
                "redis_url": REDIS,
                "instance_dir": instance,
                "secret_key": "bench-secret-" + "x" * 32,
                "undo_seconds": 0,
                "agent_rate": 0,
                "agent_max_pending": 0,
                "breaker_flood": "0",  # the batches are posted at once
                "breaker_rejections": 0,
            }
        )
        svc = app.extensions["countersign"]
        try:
            return run(app, svc, args)
        finally:
            svc.close()


def run(app, svc, args) -> dict:
    with svc.db.write() as session:
        create_user(session, "olivia", "reviewer", "correct horse battery")
        create_user(session, "rita", "reviewer", "correct horse battery")
        created = create_agent(session, svc.box, "billing-bot", ["olivia"])
    agent = AgentClient(app.test_client(), "billing-bot", created.secret)
    for i in range(args.batches * BATCH):
        assert agent.defer(refund(summary=f"Refund {i}")).status_code == 202
    rita = logged_in(app, "rita")
    meter = Meter(svc.db)
    profile = cProfile.Profile() if args.profile else None
    steps: dict[str, list[dict]] = {}

    def step(name: str, call):
        meter.reset()
        wall, cpu = time.perf_counter(), time.thread_time()
        answer = call()
        steps.setdefault(name, []).append(
            {
                "wall": (time.perf_counter() - wall) * 1000,
                "cpu": (time.thread_time() - cpu) * 1000,
                "render_cpu": meter.render_cpu,
                "write_wall": meter.write_wall,
                "write_cpu": meter.write_cpu,
                "statements": meter.statements,
                "in_writes": meter.in_writes,
            }
        )
        return answer

    for n in range(args.batches):
        if profile and n >= 3:  # not the first templates' compiling
            profile.enable()
        started = step("POST /batch/start", lambda: rita.post("/batch/start", {"answer": "page"}))
        page = started
        if started.status_code in (302, 303):  # the older flow: the page is a second request
            page = step("GET /batch", lambda: rita.get("/batch"))
        if profile:
            profile.disable()
        ids = list(dict.fromkeys(CARD.findall(page.get_data(as_text=True))))
        assert len(ids) == BATCH, ids
        for d_id in ids:
            answer = step(
                "a decision",
                lambda d_id=d_id: rita.post(f"/batch/{d_id}/approve", {"seen_ms": "4000"}, True),
            )
            assert b"Approved." in answer.data
    if profile:
        pstats.Stats(profile).sort_stats("cumulative").print_stats(40)
    medians = {}
    for name, rows in steps.items():
        rows = rows[3:] or rows
        medians[name] = {c: statistics.median(r[c] for r in rows) for c in COLUMNS}
        medians[name]["statements"] = rows[-1]["statements"]
        medians[name]["in_writes"] = rows[-1]["in_writes"]
    return medians


if __name__ == "__main__":
    main()
