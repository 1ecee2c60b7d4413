"""Where a batch's time goes on the server: Start batch with its page, then the decisions.

    .venv/bin/python bench/batch_page.py [--db sqlite|postgres] [--batches 30] [--profile]

The app runs in this process (Flask's test client: no HTTP, so the figures are the
server's own time) on a fresh database and BENCH_REDIS_URL. A reviewer clears
`--batches` batches of 5: POST /batch/start with `answer=page`, as static/review.js
sends it (and, where it answers with a redirect, as before commit 66900de, the GET
/batch it leads to), then five htmx approvals. Printed
per step: the median time, the part of it spent rendering templates, and the SQL
statements sent (a `before_cursor_execute` listener on the engine). `--profile` adds
cProfile's top functions for Start batch and its page. Run it in another checkout
(`git archive COMMIT | tar -x -C DIR`, this file copied into DIR/bench/, run with
DIR first on PYTHONPATH) to compare commits.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

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


class Meter:
    """Statements sent and milliseconds spent rendering, since the last `reset`."""

    def __init__(self, engine) -> None:
        self.statements = 0
        self.render_ms = 0.0
        event.listen(engine, "before_cursor_execute", self._statement)
        render = flask.templating._render

        def timed_render(*args, **kwargs):
            start = time.perf_counter()
            try:
                return render(*args, **kwargs)
            finally:
                self.render_ms += (time.perf_counter() - start) * 1000

        flask.templating._render = timed_render

    def _statement(self, *_args) -> None:
        self.statements += 1

    def reset(self) -> None:
        self.statements, self.render_ms = 0, 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    with database(args.db) as url, tempfile.TemporaryDirectory(prefix="cs-") as instance:
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
            run(app, svc, args)
        finally:
            svc.close()


def run(app, svc, args) -> None:
    with svc.db.write() as session:
        create_user(session, "olivia", "reviewer", "correct horse battery")
        create_user(session, "rita", "reviewer", "correct horse battery")
        created = create_agent(session, svc.box, "billing-bot", ["olivia"])
    agent = AgentClient(app.test_client(), "billing-bot", created.secret)
    for i in range(args.batches * BATCH):
        assert agent.defer(refund(summary=f"Refund {i}")).status_code == 202
    rita = logged_in(app, "rita")
    meter = Meter(svc.db.engine)
    profile = cProfile.Profile() if args.profile else None
    steps: dict[str, list[tuple[float, float, int]]] = {}

    def step(name: str, call):
        meter.reset()
        start = time.perf_counter()
        answer = call()
        steps.setdefault(name, []).append(
            ((time.perf_counter() - start) * 1000, meter.render_ms, meter.statements)
        )
        return answer

    for _ in range(args.batches):
        if profile:
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
    print(f"{args.db}, {args.batches} batches of {BATCH} (medians, the first 3 left out):")
    for name, rows in steps.items():
        rows = rows[3:] or rows
        took = statistics.median(r[0] for r in rows)
        rendering = statistics.median(r[1] for r in rows)
        print(
            f"  {name:<18} {took:7.2f} ms   rendering {rendering:6.2f} ms   "
            f"{rows[-1][2]:3d} statements"
        )
    if profile:
        pstats.Stats(profile).sort_stats("cumulative").print_stats(40)


if __name__ == "__main__":
    main()
