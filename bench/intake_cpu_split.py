"""Intake's CPU split step by step: each step's thread CPU, in-process, no profiler.

    .venv/bin/python bench/intake_cpu_split.py [--db sqlite|postgres] [--requests 2000]
                                               [--batches 4] [--tree DIR]

The intakes are built and signed first, then handed to the app's WSGI callable one
after another (as bench/cpu.py does), each step of intake wrapped in a timer of its
thread's CPU (`time.thread_time_ns`; module attributes replaced before the app is
built, as bench/split_app.py does). Figures are per intake and inclusive (a step's line
holds the steps inside it), from the batch whose whole was least (other work on a
shared machine only adds). Unlike cProfile's, these timers cost a few microseconds per
step, not per Python call, so C work (SQLite, the JSON encoder, sockets) and Python
keep their proportions. `--tree DIR` splits another checkout (a `git archive` of main).
docs/SCALING.md, "Intake's CPU step by step", has its figures.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
parser.add_argument("--requests", type=int, default=2000)
parser.add_argument("--batches", type=int, default=4)
parser.add_argument("--tree", default=str(Path(__file__).resolve().parent.parent))
args = parser.parse_args()
sys.path.insert(0, args.tree)

from bench.common import database  # noqa: E402
from bench.cpu import intake_app, signed_intakes  # noqa: E402

_spent: dict[str, int] = defaultdict(int)
_calls: dict[str, int] = defaultdict(int)
_timing = [False]


def timed(label: str, fn: Callable) -> Callable:
    def wrapper(*a: Any, **k: Any) -> Any:
        if not _timing[0]:
            return fn(*a, **k)
        started = time.thread_time_ns()
        try:
            return fn(*a, **k)
        finally:
            _spent[label] += time.thread_time_ns() - started
            _calls[label] += 1

    return wrapper


def patch(owner: Any, name: str, label: str) -> None:
    if hasattr(owner, name):  # a step another tree does not have is left out
        setattr(owner, name, timed(label, getattr(owner, name)))


import review.agents.breakers as breakers  # noqa: E402
import review.api.views as views  # noqa: E402
import review.commit_groups as commit_groups  # noqa: E402
import review.db as rdb  # noqa: E402
import review.intake.admission as admission  # noqa: E402
import review.intake.deferrals as deferrals  # noqa: E402
import review.intake.policy as policy  # noqa: E402
import review.intake.preparation as preparation  # noqa: E402
import review.intake.receive as receive  # noqa: E402
import review.reviewing.live as live  # noqa: E402
from review.api import schema  # noqa: E402
from review.driver_statements import DriverStatements  # noqa: E402

for owner, name, label in [
    (views, "authenticate_agent", "view: signature"),
    (views, "raw_body", "view: body read"),
    (views, "require_json", "view: JSON parse"),
    (schema, "validate", "view: schema"),
    (views, "receive_deferral", "receive_deferral"),
    (views, "deferral_resource", "view: the answer's resource"),
    (views, "jsonify", "view: the answer's JSON"),
    (views, "json_answer", "view: the answer's JSON"),
    (admission, "admit", "receive: admission (Redis)"),
    (receive, "prepare", "receive: prepare"),
    (preparation, "compute_diff", "prepare: diff"),
    (preparation, "request_hash", "prepare: request hash"),
    (preparation, "action_digest", "prepare: action digest"),
    (receive, "create_deferral", "receive: create_deferral"),
    (deferrals, "deferral_values", "create: row values"),
    (deferrals, "intake_events", "create: events"),
    (deferrals, "placed_events", "create: events placed and hashed"),
    (deferrals, "_create", "SQLite write: statements"),
    (deferrals, "call_intake", "PostgreSQL: countersign_intake's call"),
    (deferrals, "rows_json", "PostgreSQL: rows as JSON"),
    (live, "note_arrival", "receive: live counter (Redis)"),
    (getattr(live, "Arrivals", None), "note", "receive: live counter (noted)"),
    (breakers, "after_intake", "receive: flood breaker"),
]:
    patch(owner, name, label)
policy.Policy.evaluate = timed("prepare: policy", policy.Policy.evaluate)
DriverStatements.bind = timed("create: row bound", DriverStatements.bind)
rdb.Database.write_grouped = timed("SQLite write (group commit)", rdb.Database.write_grouped)
_groups = commit_groups.CommitGroups
_groups._commit = timed("SQLite write: transaction", _groups._commit)

from sqlalchemy.engine import default as sa_default  # noqa: E402

_dialect = sa_default.DefaultDialect
_dialect.do_commit = timed("SQLite write: COMMIT", _dialect.do_commit)

# Around the view: Flask's and werkzeug's steps, and each hook (wrapped once the app is built).
import flask  # noqa: E402
import flask.ctx  # noqa: E402
import werkzeug.wrappers  # noqa: E402

for owner, name, label in [
    (flask.Flask, "request_context", "flask: request context made"),
    (flask.Flask, "create_url_adapter", "flask: URL adapter bound"),
    (flask.ctx.RequestContext, "push", "flask: context pushed"),
    (flask.ctx.RequestContext, "match_request", "flask: URL matched"),
    (flask.ctx.RequestContext, "pop", "flask: context popped"),
    (flask.Flask, "dispatch_request", "flask: the view"),
    (flask.Flask, "preprocess_request", "flask: hooks before"),
    (flask.Flask, "process_response", "flask: hooks after, session saved"),
    (werkzeug.wrappers.Response, "__call__", "werkzeug: response to WSGI"),
]:
    patch(owner, name, label)


def time_hooks(app: Any) -> None:
    """Each app-wide and blueprint hook, and the session interface, timed on its own."""
    for kind, funcs in (("before", app.before_request_funcs), ("after", app.after_request_funcs)):
        for blueprint, hooks in funcs.items():
            hooks[:] = [
                timed(f"hook {kind}: {blueprint or 'app'} {getattr(h, '__name__', h)}", h)
                for h in hooks
            ]
    interface = app.session_interface
    for name in ("open_session", "save_session"):
        setattr(interface, name, timed(f"session: {name}", getattr(interface, name)))


def timer_cost() -> float:
    """What one timed step adds to the thread CPU around it, in µs (a timed no-op)."""
    step = timed("timer's own cost", lambda: None)
    _timing[0] = True
    started = time.thread_time_ns()
    for _ in range(20000):
        step()
    spent = time.thread_time_ns() - started
    _timing[0] = False
    return spent / 20000 / 1e3


def main() -> None:
    with database(args.db) as url, tempfile.TemporaryDirectory() as folder:
        app, svc, secret = intake_app(url, folder)
        time_hooks(app)

        def intakes(n: int) -> list[dict]:
            return signed_intakes(secret, n)

        statuses: list[str] = []
        whole = timed("the request (WSGI)", app.wsgi_app)

        def serve(environs: list[dict]) -> None:
            for env in environs:
                answer = whole(env, lambda status, headers, exc_info=None: statuses.append(status))
                for _ in answer:
                    pass
                if not statuses[-1].startswith("202"):
                    raise SystemExit(f"intake answered {statuses[-1]}")

        serve(intakes(100))  # warm-up: caches, prepared statements, pools
        gc.collect()
        gc.freeze()  # as review/wsgi.py does
        per = args.requests // args.batches
        best: tuple[int, dict[str, int], dict[str, int]] | None = None
        for _ in range(args.batches):
            batch = intakes(per)
            _spent.clear(), _calls.clear()
            _timing[0] = True
            started = time.thread_time_ns()
            serve(batch)
            spent = time.thread_time_ns() - started
            _timing[0] = False
            if best is None or spent < best[0]:
                best = (spent, dict(_spent), dict(_calls))
        assert best is not None
        spent, steps, calls = best
        load = os.getloadavg()[0]
        print(
            f"{args.db}, {args.tree}: {spent / per / 1e6:.3f} ms thread CPU per intake"
            f" (least of {args.batches} batches of {per}; load {load:.1f})"
        )
        for label in sorted(steps, key=lambda k: -steps[k]):
            each = steps[label] / per / 1e3
            print(f"  {label:<40} {each:8.1f} µs  ({calls[label] / per:.1f} a request)")
        timers = sum(calls.values()) / per
        print(
            f"  ({timers:.0f} timed steps a request, each adding about {timer_cost():.1f} µs"
            " to the steps around it: the whole and the outer steps are inflated by them)"
        )
        svc.close()


if __name__ == "__main__":
    main()
