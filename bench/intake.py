"""Intake throughput and latency: Countersign under gunicorn vs a bare JSON-insert endpoint.

    .venv/bin/python bench/intake.py [--db sqlite|postgres|both] [--requests 2000]
                                     [--concurrency 8] [--rounds 3] [--policy N]
                                     [--shipped-config]

Both servers run with the same gunicorn settings (2 gthread workers, 4 threads; with
`--shipped-config`, review/gunicorn_conf.py's 32 threads and access log) on the same
kind of database, in the same run, alternating rounds (intake, then the baseline,
back to back). The ratio reported is the median of the rounds' own ratios, so a machine
that slows down between rounds moves both sides of a ratio together; the p99 is the
median of the rounds' p99s; the lines shown are the median rounds. Countersign's
requests are signed deferrals (the README's refund example, with a small before/after
diff) from one agent whose quotas are counted but out of reach; the baseline parses
the same JSON and inserts it as one row. Targets (issue 3): intake keeps at least half the
baseline's throughput, and p99 stays under 50 ms at 8 concurrent clients; issue 20 raised
them to 0.60 and 35 ms. On PostgreSQL each round also shows its database backends' CPU
per request (`db CPU`, /proc/<pid>/schedstat, bench/database_cpu.py): they
run on the same cores as the servers, and a server's own CPU does not include them.

`--policy N` measures the cost of a big policy instead (issue 16): intake with the
default policy against intake with N rules (the default plus generated ones,
bench/policy_rules.py), two Countersign servers in the same run, alternating rounds as
above. Target: the big policy keeps at least 0.9 of the default's throughput.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
from bench.database_cpu import DatabaseCpu  # noqa: E402
from review.signing import sign_headers  # noqa: E402

BODY = {
    "action": {"tool": "billing.refund", "args": {"invoice": "INV-1", "amount": 740}},
    "summary": "Refund $740 to customer C-88319",
    "on_behalf_of": {"id": "alice@example.com", "display_name": "Alice"},
    "rationale": "duplicate charge on 2026-11-18",
    "before": {"invoice": "INV-1", "status": "paid", "refunded": 0},
    "after": {"invoice": "INV-1", "status": "refunded", "refunded": 740},
    "trace": {"id": "a1f8", "url": "https://traces.example.com/t/a1f8"},
    "labels": {"team": "billing"},
}


def bench(
    kind: str, n: int, concurrency: int, rounds: int, policy_rules: int = 0
) -> tuple[Result, Result]:
    """Countersign's rounds and the baseline's; with `policy_rules`, the baseline is
    Countersign with the default policy and the measured one has that many rules."""
    if policy_rules:
        return bench_policy(kind, n, concurrency, rounds, policy_rules)
    with (
        database(kind) as cs_url,
        database(kind) as bare_url,
        tempfile.TemporaryDirectory(prefix="cs-bench-") as instance,
    ):
        env = {
            "DATABASE_URL": cs_url,
            "REDIS_URL": REDIS,
            "COUNTERSIGN_INSTANCE_DIR": instance,
            "COUNTERSIGN_AGENT_RATE": "1000000",  # checked (one Redis round trip), never hit
            "COUNTERSIGN_AGENT_MAX_PENDING": "1000000",  # counted, never hit
            "COUNTERSIGN_BREAKER_FLOOD": "1000000/60",  # counted (one Redis round trip), never hit
        }
        flask_cmd(env, "db", "upgrade")
        flask_cmd(env, "users", "create", "owner", "--role", "admin", stdin="bench-password\n")
        secret = flask_cmd(env, "agents", "create", "bench-bot", "--owner", "owner").split()[-1]
        raw = json.dumps(BODY).encode()

        def signed_requests() -> list[tuple[str, bytes, dict[str, str]]]:
            out = []
            for _ in range(n):
                headers = sign_headers(secret, f"msg_{uuid.uuid4().hex}", raw)
                headers["Content-Type"] = "application/json"
                out.append(("/api/v1/agents/bench-bot/deferrals", raw, headers))
            return out

        bare_requests = [("/ingest", raw, {"Content-Type": "application/json"})] * n
        cs_results, bare_results = [], []
        with (
            gunicorn("app:app", env) as cs_base,
            gunicorn("bare_app:app", {"DATABASE_URL": bare_url}, cwd=ROOT / "bench") as bare,
        ):
            drive("warm-up", cs_base, signed_requests()[:100], concurrency)
            drive("warm-up", bare, bare_requests[:100], concurrency)
            with backends_of(kind, cs_url) as cs_db, backends_of(kind, bare_url) as bare_db:
                for _ in range(rounds):
                    prepared = signed_requests()  # signed just before sending: fresh timestamps
                    cs_results.append(
                        drive_counting(
                            cs_db, f"countersign intake ({kind})", cs_base, prepared, concurrency
                        )
                    )
                    bare_results.append(
                        drive_counting(
                            bare_db, f"bare json+insert ({kind})", bare, bare_requests, concurrency
                        )
                    )
        return cs_results, bare_results


@contextlib.contextmanager
def backends_of(kind: str, url: str) -> Iterator[DatabaseCpu | None]:
    """PostgreSQL: the CPU of the backends serving `url`'s database (on the same cores as
    the servers), watched from here on; SQLite: None (the database is the server's own)."""
    if kind != "postgres":
        yield None
        return
    backends = DatabaseCpu(url)
    backends.watch()
    try:
        yield backends
    finally:
        backends.close()


def drive_counting(backends: DatabaseCpu | None, *args: Any) -> Result:
    """`drive(*args)`, with the database backends' CPU per request when they are watched."""
    before = backends.used() if backends else 0.0
    result = drive(*args)
    if backends:
        result.database_cpu_us = (backends.used() - before) * 1e6 / result.requests
    return result


def countersign_env(url: str, instance: str, **more: str) -> tuple[dict[str, str], str]:
    """The environment of a Countersign on `url`, migrated, with its agent; and its secret."""
    env = {
        "DATABASE_URL": url,
        "REDIS_URL": REDIS,
        "COUNTERSIGN_INSTANCE_DIR": instance,
        "COUNTERSIGN_AGENT_RATE": "1000000",
        "COUNTERSIGN_AGENT_MAX_PENDING": "1000000",
        "COUNTERSIGN_BREAKER_FLOOD": "1000000/60",
        **more,
    }
    flask_cmd(env, "db", "upgrade")
    flask_cmd(env, "users", "create", "owner", "--role", "admin", stdin="bench-password\n")
    secret = flask_cmd(env, "agents", "create", "bench-bot", "--owner", "owner").split()[-1]
    return env, secret


def bench_policy(
    kind: str, n: int, concurrency: int, rounds: int, policy_rules: int
) -> tuple[list[Result], list[Result]]:
    """Intake with `policy_rules` rules against intake with the default policy."""
    from bench.policy_rules import generated_policy

    with (
        database(kind) as big_url,
        database(kind) as default_url,
        tempfile.TemporaryDirectory(prefix="cs-bench-") as big_dir,
        tempfile.TemporaryDirectory(prefix="cs-bench-") as default_dir,
    ):
        policy = Path(big_dir) / "policy.toml"
        policy.write_text(generated_policy(policy_rules))
        big_env, big_secret = countersign_env(big_url, big_dir, COUNTERSIGN_POLICY_FILE=str(policy))
        default_env, default_secret = countersign_env(default_url, default_dir)
        raw = json.dumps(BODY).encode()

        def signed(secret: str, count: int) -> list[tuple[str, bytes, dict[str, str]]]:
            out = []
            for _ in range(count):
                headers = sign_headers(secret, f"msg_{uuid.uuid4().hex}", raw)
                headers["Content-Type"] = "application/json"
                out.append(("/api/v1/agents/bench-bot/deferrals", raw, headers))
            return out

        big_results, default_results = [], []
        with gunicorn("app:app", big_env) as big, gunicorn("app:app", default_env) as default:
            drive("warm-up", big, signed(big_secret, 100), concurrency)
            drive("warm-up", default, signed(default_secret, 100), concurrency)
            for _ in range(rounds):
                batch = signed(big_secret, n)
                big_results.append(
                    drive(f"intake, {policy_rules} rules ({kind})", big, batch, concurrency)
                )
                batch = signed(default_secret, n)
                default_results.append(
                    drive(f"intake, default policy ({kind})", default, batch, concurrency)
                )
        return big_results, default_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--policy", type=int, default=0, metavar="N",
        help="compare intake with N policy rules against the default policy",
    )  # fmt: skip
    add_server_options(parser)
    args = parser.parse_args()
    use_server_options(args)
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    print(
        f"{args.requests} requests x {args.rounds} rounds, {args.concurrency} clients, "
        f"{server_settings()}, {os.cpu_count()} CPUs"
    )
    for kind in kinds:
        cs_rounds, bare_rounds = bench(
            kind, args.requests, args.concurrency, args.rounds, args.policy
        )
        ratios = []
        for n, (cs, bare) in enumerate(zip(cs_rounds, bare_rounds, strict=True), 1):
            ratios.append(cs.throughput / bare.throughput)
            print(f"  round {n}: {cs.line()}")
            print(f"  round {n}: {bare.line()}   (ratio {ratios[-1]:.2f})")
        cs, bare = median_round(cs_rounds), median_round(bare_rounds)
        ratio = statistics.median(ratios)  # each round's pair ran back to back: drift cancels
        p99 = statistics.median(r.percentile(99) for r in cs_rounds)
        print(cs.line())
        print(bare.line())
        if args.policy:
            verdict = "ok" if ratio >= 0.9 else "MISSES TARGET"
            print(
                f"  {args.policy} rules / default policy throughput, median of the rounds' "
                f"ratios = {ratio:.2f}   ({verdict}: >= 0.90)"
            )
            continue
        if kind == "postgres":
            cs_db = statistics.median(r.database_cpu_us for r in cs_rounds)
            bare_db = statistics.median(r.database_cpu_us for r in bare_rounds)
            print(
                f"  PostgreSQL backends' CPU per request, median of the rounds: intake "
                f"{cs_db:.0f} us, bare {bare_db:.0f} us"
            )
        verdict = "ok" if ratio >= 0.6 and p99 < 35 else "MISSES TARGET"
        print(
            f"  intake / bare throughput, median of the rounds' ratios = {ratio:.2f}; "
            f"intake p99, median of the rounds = {p99:.1f} ms   "
            f"({verdict}: >= 0.60 and p99 < 35 ms, issue 20)"
        )


def median_round(results: list[Result]) -> Result:
    return sorted(results, key=lambda r: r.throughput)[len(results) // 2]


if __name__ == "__main__":
    main()
