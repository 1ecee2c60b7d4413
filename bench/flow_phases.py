"""Where the reviewer flow's CPU goes, part by part, in-process.

    .venv/bin/python bench/flow_phases.py [--items 100] [--undo-seconds S] [--tree DIR]
        [--db sqlite|postgres]

The flow of bench/reviewer_flow.py (Start batch with its page, then each card's
decision, POST /batch/<id>/approve as htmx) for one reviewer on SQLite, through the app
factory and Flask's test client (bench/decision_cost.py's set-up), with no profiler:
each part below is wrapped in a timer of this thread's CPU (time.thread_time), which
other processes on a busy machine inflate less than wall time, and which cProfile's
overhead does not distort (it multiplies Jinja's generators several times over).
Printed: milliseconds of CPU per decision for each part (and per call), the two
requests whole first. With `--undo-seconds S` each decision is held for its window and
each batch's are taken into effect between batches, as decision_cost does. `--tree DIR`
runs another checkout's code (e.g. `git archive main | tar -x -C DIR`), for a before
and after in one minute. `--db postgres` runs it on a throwaway PostgreSQL database
(BENCH_POSTGRES_URL's server), and prints the database's backends' CPU per decision too
(bench/database_cpu.py), which this thread's timers do not include. Uses
BENCH_REDIS_URL. docs/REVIEWING.md has the figures.
"""

from __future__ import annotations

import argparse
import collections
import importlib
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

PARTS = (  # (module, function): each wrapped where the flow calls it
    ("review.reviewing.prepared_decisions", "prepare"),
    ("review.reviewing.prepared_decisions", "apply"),
    ("review.reviewing.prepared_holds", "prepare"),
    ("review.reviewing.prepared_holds", "apply"),
    ("review.reviewing.decisions", "after_decided"),
    ("review.reviewing.undo", "schedule"),
    ("flask.templating", "_render"),
    ("review.web.auth", "load_user"),
    ("review.reviewing.claims", "claim_batch"),
    ("review.reviewing.claims", "take_batch"),  # Start batch's (claim_batch's too)
    ("review.reviewing.queue_reads", "batch_items"),
    ("review.web.reviewer_pages", "card_context"),
    ("review.reviewing.taking_effect", "take_effect_if_due"),
)
CALLERS = (  # modules that import a part by name: their name is rebound too
    "review.reviewing.decisions",
    "review.web.batch_pages",
    "review.web.reviewer_pages",
    "review.web.auth",
)


class Timers:
    def __init__(self) -> None:
        self.cpu: collections.Counter[str] = collections.Counter()
        self.calls: collections.Counter[str] = collections.Counter()

    def wrap(self, label: str, func):
        def timed(*args, **kwargs):
            start = time.thread_time()
            try:
                return func(*args, **kwargs)
            finally:
                self.cpu[label] += time.thread_time() - start
                self.calls[label] += 1

        return timed

    def install(self) -> None:
        for module_name, name in PARTS:
            module = importlib.import_module(module_name)
            func = getattr(module, name, None)
            if func is None:  # not in this tree
                continue
            timed = self.wrap(f"{module_name.rsplit('.', 1)[-1]}.{name}", func)
            setattr(module, name, timed)
            for caller_name in CALLERS:
                caller = importlib.import_module(caller_name)
                if getattr(caller, name, None) is func:
                    setattr(caller, name, timed)
        from review.web import auth

        auth.login_manager._user_callback = auth.load_user  # registered before the wrap

    def clear(self) -> None:
        self.cpu.clear()
        self.calls.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--undo-seconds", type=int, default=0, metavar="S")
    parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args()
    sys.path.insert(0, str(args.tree.resolve()))
    from bench import decision_cost
    from bench.common import database
    from bench.database_cpu import DatabaseCpu
    from bench.reviewer_flow import LIVE_CARD
    from review.models import utcnow
    from review.reviewing.taking_effect import take_effect_due

    timers = Timers()
    timers.install()
    held = bool(args.undo_seconds)
    answer = decision_cost.HELD if held else "Approved."
    with database(args.db) as url, tempfile.TemporaryDirectory(prefix="cs-bench-") as instance:
        app, svc, secret = decision_cost.build(url, instance, args.undo_seconds)
        warm = ("base.html", "review/")  # as review/wsgi.py compiles them at start
        for name in app.jinja_env.list_templates(filter_func=lambda n: n.startswith(warm)):
            app.jinja_env.get_template(name)
        inner = app.wsgi_app

        def whole(environ, start_response):
            kind = "request: Start batch" if environ["PATH_INFO"] == "/batch/start" else None
            return timers.wrap(kind or "request: decision", inner)(environ, start_response)

        app.wsgi_app = whole
        decision_cost.defer_all(app, secret, args.items)
        client, csrf, headers = decision_cost.logged_in(app)
        timers.clear()
        backends = DatabaseCpu(url) if args.db == "postgres" else None
        database_cpu, mark = (0.0, 0.0) if backends is not None else (None, 0.0)
        decided = 0
        while True:
            page = client.post("/batch/start", data={"csrf_token": csrf, "answer": "page"})
            cards = LIVE_CARD if held else decision_cost.CARD
            ids = list(dict.fromkeys(cards.findall(page.get_data(as_text=True))))
            if not ids:
                break
            for d_id in ids:
                r = client.post(
                    f"/batch/{d_id}/approve",
                    data={"csrf_token": csrf, "seen_ms": "4000"},
                    headers=headers,
                )
                assert answer in r.get_data(as_text=True), r.get_data(as_text=True)[:300]
                decided += 1
            if held:  # not timed: the worker's part
                cpu, calls = timers.cpu.copy(), timers.calls.copy()
                if backends is not None:  # the backends' part of it left out too
                    database_cpu += backends.used() - mark
                with app.app_context():
                    take_effect_due(svc, utcnow() + timedelta(seconds=args.undo_seconds + 1))
                timers.cpu, timers.calls = cpu, calls
                if backends is not None:
                    mark = backends.used()
        if backends is not None:
            database_cpu += backends.used() - mark
            backends.close()
        svc.close()
    print(
        f"{args.tree}: {decided} {'held ' if held else ''}decisions, "
        f"load average {os.getloadavg()[0]:.1f}; CPU ms per decision (per call):"
    )
    for label, seconds in sorted(timers.cpu.items(), key=lambda kv: -kv[1]):
        calls = timers.calls[label]
        per_call = seconds * 1000 / calls
        print(f"  {label:<38} {seconds * 1000 / decided:6.3f}  ({per_call:.3f} x{calls})")
    if database_cpu is not None:
        label = "PostgreSQL's backends (not above)"
        print(f"  {label:<38} {database_cpu * 1000 / decided:6.3f}")


if __name__ == "__main__":
    main()
