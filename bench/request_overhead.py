"""What a reviewer's browser request pays around its view, in-process, against bare Flask.

    .venv/bin/python bench/request_overhead.py [--db sqlite|postgres] [--requests 2000]
                                               [--batches 5] [--tree DIR] [--profile N]
                                               [--calls]

Countersign's app (bench/decision_cost.py's set-up, BENCH_REDIS_URL) gets one extra view,
`/bench/noop`, that does nothing but answer a few bytes behind `login_required`: what a
request to it costs is what every reviewer request pays before and after its own work:
Werkzeug's and Flask's dispatch, the session cookie (opened, checked, saved), flask-login's
user loader (a database read), the CSRF check (the POST, with the htmx header a decision
sends), and the app's hooks (safety headers, request ids, `Cache-Control`). The live
batch's poll with nothing changed (review/web/live_pages.py: one Redis GET, no user) is
timed too, and an agent's request (`/api/v1/bench/noop`, a view of the API's blueprint
that answers `{}`: a POST with a JSON body and no cookie) for what the API pays around its
views. A bare Flask app answering the same bytes, in the same process, is the floor.

The requests are built before the clock starts and handed to the WSGI callable one after
another, with this thread's CPU time (time.thread_time) around each batch of them; the
least batch is reported (other work on a shared machine only ever adds). `--tree DIR`
runs another checkout's code (`git archive main | tar -x -C DIR`) for a before/after:
run both in one go and compare the ratios to the bare app, which runs in both.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

NOOP = "/bench/noop"  # a view that does nothing, behind login_required on Countersign's app
API_NOOP = "/api/v1/bench/noop"  # one that answers `{}`, in the API's blueprint


def measure(name: str, app, make, expect: int, args) -> float:
    """Least CPU ms per request over the batches (thread CPU)."""
    from bench.cpu import serve  # the tree's own, once --tree is on the path

    serve(app, make(50), expect)  # warm-up
    times = []
    profiler = cProfile.Profile(time.thread_time) if args.profile or args.calls else None
    for _ in range(args.batches):
        batch = make(args.requests)
        if profiler:
            profiler.enable()
        started = time.thread_time()
        serve(app, batch, expect)
        times.append((time.thread_time() - started) * 1000 / len(batch))
        if profiler:
            profiler.disable()
    least = min(times)
    line = f"  {name:<44} {least:6.3f} ms  (median {statistics.median(times):6.3f})"
    if profiler:  # Python calls per request: a count the machine's load does not move
        calls = pstats.Stats(profiler).total_calls / (args.batches * args.requests)
        line += f"  {calls:7.1f} calls (profiled)"
    print(line, flush=True)
    if args.profile:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(args.profile)
        print(out.getvalue()[out.getvalue().index("   ncalls") :])
    return least


def bare_app():
    from flask import Flask

    app = Flask("bare")

    @app.route(NOOP, methods=["GET", "POST"])
    def noop():
        return "ok"

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--profile", type=int, default=0, metavar="N")
    parser.add_argument("--calls", action="store_true", help="Python calls per request")
    parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parent.parent)
    args = parser.parse_args()
    sys.path.insert(0, str(args.tree.resolve()))
    from flask_login import login_required
    from werkzeug.test import EnvironBuilder

    from bench import decision_cost
    from bench.common import database

    with database(args.db) as url, tempfile.TemporaryDirectory(prefix="cs-bench-") as instance:
        app, svc, _secret = decision_cost.build(url, instance)

        @app.route(NOOP, methods=["GET", "POST"])
        @login_required
        def noop():
            return "ok"

        from review.api.views import json_answer

        def api_noop():
            return json_answer({}, 200)

        app.add_url_rule(API_NOOP, "api.bench_noop", api_noop, methods=["POST"])

        client, csrf, headers = decision_cost.logged_in(app)
        cookie = client.get_cookie("countersign_session").value
        base = dict(client.environ_base)  # the address and User-Agent the session was made for

        def environs(method: str, path: str, extra: dict[str, str], cookie: str | None = cookie):
            def make(n: int) -> list[dict]:
                cookies = {"Cookie": f"countersign_session={cookie}"} if cookie else {}
                return [
                    EnvironBuilder(
                        path=path,
                        method=method,
                        headers={**cookies, **extra},
                        environ_base=base,
                        **({"data": b"{}", "content_type": "application/json"} if api else {}),
                    ).get_environ()
                    for _ in range(n)
                ]

            api = path == API_NOOP

            return make

        print(f"{args.tree} ({args.db}), load average {os.getloadavg()[0]:.1f}; CPU per request:")
        from review.reviewing import live

        poll = f"/live/batch?v={live.version(svc.redis.client())}&ids="
        floor = measure("bare Flask: GET", bare_app(), environs("GET", NOOP, {}), 200, args)
        get = measure("noop GET (session, user)", app, environs("GET", NOOP, {}), 200, args)
        post = measure(
            "noop POST (session, user, CSRF)", app, environs("POST", NOOP, headers), 200, args
        )
        polled = measure(
            "live batch poll, nothing changed",
            app,
            environs("GET", poll, {"HX-Request": "true"}),
            204,
            args,
        )
        agents = measure(
            "agent's POST (API noop, no cookie)",
            app,
            environs("POST", API_NOOP, {}, cookie=None),
            200,
            args,
        )
        svc.close()
    print(
        f"  above bare Flask: GET {get - floor:.3f} ms, POST {post - floor:.3f} ms, "
        f"poll {polled - floor:.3f} ms, agent's POST {agents - floor:.3f} ms"
    )


if __name__ == "__main__":
    main()
