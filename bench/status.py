"""The kill-switch status agents poll: GET /api/v1/agents/{agent}/status under gunicorn.

    .venv/bin/python bench/status.py [--db sqlite|postgres|both] [--requests 5000]
                                     [--concurrency 8] [--rounds 3] [--shipped-config]

One gunicorn gthread worker (4 threads; with `--shipped-config`, review/gunicorn_conf.py's
32 threads and access log) serves signed status reads from one agent;
in the same run, the same gunicorn settings serve a bare Flask endpoint answering the
same small JSON (`bench/bare_app.py`, /status), alternating rounds, median round of
each, and the median of the rounds' own ratios (each round's pair runs back to back, so
a machine that slows down between rounds moves both sides together). Targets: at least
1,000 status reads per second on one worker (issue 6) and 0.8 of the bare endpoint
(issue 20). The ratio is what verifying the signature and reading the cache cost.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    REDIS,
    ROOT,
    Result,
    add_server_options,
    database,
    drive,
    flask_cmd,
    gunicorn,
    server_settings,
    use_server_options,
)
from review.signing import sign_headers  # noqa: E402


def bench(kind: str, n: int, concurrency: int, rounds: int) -> tuple[list[Result], list[Result]]:
    with (
        database(kind) as cs_url,
        database(kind) as bare_url,
        tempfile.TemporaryDirectory(prefix="cs-bench-") as instance,
    ):
        env = {"DATABASE_URL": cs_url, "REDIS_URL": REDIS, "COUNTERSIGN_INSTANCE_DIR": instance}
        flask_cmd(env, "db", "upgrade")
        flask_cmd(env, "users", "create", "owner", "--role", "admin", stdin="bench-password\n")
        secret = flask_cmd(env, "agents", "create", "bench-bot", "--owner", "owner").split()[-1]
        path = "/api/v1/agents/bench-bot/status"
        cs_results, bare_results = [], []
        with (
            gunicorn("app:app", env) as cs_base,
            gunicorn("bare_app:app", {"DATABASE_URL": bare_url}, cwd=ROOT / "bench") as bare,
        ):

            def signed() -> list[tuple[str, bytes, dict[str, str]]]:
                return [(path, b"", sign_headers(secret, f"msg_{uuid.uuid4().hex}", b""))] * n

            drive("warm-up", cs_base, signed()[:200], concurrency, "GET")
            drive("warm-up", bare, [("/status", b"", {})] * 200, concurrency, "GET")
            for _ in range(rounds):
                cs_results.append(drive(f"status ({kind})", cs_base, signed(), concurrency, "GET"))
                bare_results.append(
                    drive(
                        f"bare JSON ({kind})", bare, [("/status", b"", {})] * n, concurrency, "GET"
                    )
                )
        return cs_results, bare_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    add_server_options(parser)
    args = parser.parse_args()
    use_server_options(args)
    os.environ["BENCH_WORKERS"] = "1"
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    print(
        f"{args.requests} requests x {args.rounds} rounds, {args.concurrency} clients, "
        f"{server_settings()}, {os.cpu_count()} CPUs"
    )
    for kind in kinds:
        cs_rounds, bare_rounds = bench(kind, args.requests, args.concurrency, args.rounds)
        ratios = []
        for number, (cs, bare) in enumerate(zip(cs_rounds, bare_rounds, strict=True), 1):
            ratios.append(cs.throughput / bare.throughput)
            print(f"  round {number}: {cs.line()}")
            print(f"  round {number}: {bare.line()}   (ratio {ratios[-1]:.2f})")
        cs, bare = median(cs_rounds), median(bare_rounds)
        ratio = statistics.median(ratios)  # each round's pair ran back to back: drift cancels
        print(cs.line())
        print(bare.line())
        verdict = "ok" if cs.throughput >= 1000 and ratio >= 0.8 else "MISSES TARGET"
        print(
            f"  status / bare, median of the rounds' ratios = {ratio:.2f}"
            f"   ({verdict}: >= 1000 req/s on one worker and >= 0.8 of bare JSON, issue 20)"
        )


def median(results: list[Result]) -> Result:
    return sorted(results, key=lambda r: r.throughput)[len(results) // 2]


if __name__ == "__main__":
    main()
