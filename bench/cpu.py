"""CPU per request, in-process: where intake's and the status read's time goes.

    .venv/bin/python bench/cpu.py [--db sqlite|postgres|both] [--requests 1000]
                                  [--only intake,status,bare] [--policy N]
                                  [--batches K] [--profile N] [--calls]

No server and no network client: the requests are built (and signed) before the clock
starts, then handed to each app's WSGI callable one after another in this process, and
the process's CPU time (`time.process_time`, user + system) is divided by the requests;
with `--batches K`, the requests are timed in K batches and the least is reported (other
work on a shared machine only ever adds to a batch's time).
The database and Redis are real (their own processes' time is not counted), so this is
what one web worker spends per request, without the load driver's share, which is what
the throughput of bench/intake.py and bench/status.py is bounded by on a shared machine.
The bare apps (bench/bare_app.py) run the same way in the same process, so the ratio
`bare / countersign` is the in-process counterpart of those benchmarks' ratios.

`--profile N`: cProfile over the measured requests, the N top functions by own time and
by cumulative time. `--calls`: the profile's total function calls per request, a count
that does not move with the machine's load (Python calls, not C functions'
instructions; under `valgrind --tool=callgrind` run twice with different `--requests`
for an instruction count per request).
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import io
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from werkzeug.test import EnvironBuilder  # noqa: E402

from bench.common import REDIS, database  # noqa: E402
from bench.intake import BODY  # noqa: E402
from review.signing import sign_headers  # noqa: E402

PATH = "/api/v1/agents/bench-bot/deferrals"
STATUS = "/api/v1/agents/bench-bot/status"


def environ(path: str, method: str, body: bytes, headers: dict[str, str]) -> dict:
    return EnvironBuilder(path=path, method=method, data=body, headers=headers).get_environ()


def serve(app: Callable, environs: list[dict], expect: int) -> None:
    """Each request through the WSGI callable, its answer read to the end."""
    seen: list[str] = []

    def start_response(status: str, headers: list, exc_info=None) -> None:
        seen.append(status)

    for env in environs:
        answer = app(env, start_response)
        try:
            for _ in answer:
                pass
        finally:
            if hasattr(answer, "close"):
                answer.close()
        if not seen[-1].startswith(str(expect)):
            raise SystemExit(f"{env['PATH_INFO']} answered {seen[-1]}")


def measure(name: str, app: Callable, environs: list[dict], expect: int, args) -> float:
    """CPU ms per request; with --profile or --calls, the profile too."""
    # CPU time, not wall time: waiting for a commit's fsync or a reply is not our CPU.
    profiler = cProfile.Profile(time.process_time) if (args.profile or args.calls) else None
    batches = [environs[i :: args.batches] for i in range(args.batches)]
    times = []
    if profiler:
        profiler.enable()
    for batch in batches:
        started = time.process_time()
        serve(app, batch, expect)
        times.append((time.process_time() - started) * 1000 / len(batch))
    if profiler:
        profiler.disable()
    per_request = min(times)  # other work on the machine only ever adds to a batch's time
    line = f"{name:<30} {per_request:6.3f} ms CPU per request"
    if args.batches > 1:
        line += f" (least of {args.batches} batches; median {statistics.median(times):6.3f})"
    if profiler:
        stats = pstats.Stats(profiler)
        line += f"   {stats.total_calls / len(environs):8.1f} calls per request"
    print(line + ("   (profiled: slower)" if profiler else ""), flush=True)
    if profiler and args.dump:
        profiler.dump_stats(f"{args.dump}-{name.split()[0]}-{name.split('(')[-1][:-1]}.prof")
    if profiler and args.profile:
        for order in ("tottime", "cumulative"):
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(args.profile)
            text = out.getvalue()
            text = text[text.index("   ncalls") :].replace(str(Path.cwd()) + "/", "")
            print(
                text.replace(str(Path(cProfile.__file__).parent) + "/", "").replace(
                    str(Path(importlib.__file__).parent.parent) + "/site-packages/", ""
                )
            )
    return per_request


def intake_app(url: str, folder: str, **overrides: Any) -> tuple[Any, Any, str]:
    """Countersign's app for in-process intakes, on the fresh database at `url`: one
    admin and one agent whose quotas are counted but out of reach. The app, its services
    and the agent's secret (for `signed_intakes`)."""
    from review.agents.registry import create_agent
    from review.app_factory import create_app
    from review.migrate import upgrade
    from review.users import create_user

    app = create_app(
        {
            "database_url": url,
            "redis_url": REDIS,
            "instance_dir": folder,
            "secret_key": "bench-secret-key-" + "x" * 32,
            "agent_rate": 1000000,  # counted (one Redis round trip), never hit
            "agent_max_pending": 1000000,
            "breaker_flood": "1000000/60",
            **overrides,
        }
    )
    svc = app.extensions["countersign"]
    upgrade(svc.db)
    with svc.db.write() as session:
        create_user(session, "owner", "admin", "bench-password")
        secret = create_agent(session, svc.box, "bench-bot", ["owner"]).secret
    return app, svc, secret


def signed_intakes(secret: str, n: int) -> list[dict]:
    """`n` WSGI environs of the refund deferral (bench/intake.py's BODY), each signed
    under a webhook-id of its own."""
    raw = json.dumps(BODY).encode()
    return [
        environ(
            PATH,
            "POST",
            raw,
            {
                **sign_headers(secret, f"msg_{uuid.uuid4().hex}", raw),
                "Content-Type": "application/json",
            },
        )
        for _ in range(n)
    ]


def countersign(kind: str, url: str, folder: str, args) -> dict[str, float]:
    overrides = {}
    if args.policy:
        from bench.policy_rules import generated_policy

        policy = Path(folder) / "policy.toml"
        policy.write_text(generated_policy(args.policy))
        overrides["policy_file"] = str(policy)
    app, svc, secret = intake_app(url, folder, **overrides)

    def intake(n: int) -> list[dict]:
        return signed_intakes(secret, n)

    def status(n: int) -> list[dict]:
        return [
            environ(STATUS, "GET", b"", sign_headers(secret, f"msg_{uuid.uuid4().hex}", b""))
            for _ in range(n)
        ]

    results = {}
    serve(app, intake(50), 202)  # warm-up: caches, prepared statements, pools
    serve(app, status(50), 200)
    if "intake" in args.only:
        results["intake"] = measure(f"intake ({kind})", app, intake(args.requests), 202, args)
    if "status" in args.only:
        results["status"] = measure(f"status ({kind})", app, status(args.requests), 200, args)
    svc.close()
    return results


def bare(kind: str, url: str, args) -> dict[str, float]:
    os.environ["DATABASE_URL"] = url
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    module = importlib.reload(importlib.import_module("bare_app"))
    raw = json.dumps(BODY).encode()

    def ingest(n: int) -> list[dict]:
        return [
            environ("/ingest", "POST", raw, {"Content-Type": "application/json"}) for _ in range(n)
        ]

    serve(module.app, ingest(50), 202)  # warm-up
    status = [environ("/status", "GET", b"", {}) for _ in range(args.requests)]
    quiet = argparse.Namespace(**{**vars(args), "profile": 0, "calls": False, "dump": None})
    results = {
        "intake": measure(
            f"bare json+insert ({kind})", module.app, ingest(args.requests), 202, quiet
        ),
        "status": measure(f"bare JSON ({kind})", module.app, status, 200, quiet),
    }
    module.engine.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--only", default="intake,status,bare")
    parser.add_argument("--policy", type=int, default=0, metavar="N", help="a policy of N rules")
    parser.add_argument("--profile", type=int, default=0, metavar="N")
    parser.add_argument("--calls", action="store_true")
    parser.add_argument(
        "--batches", type=int, default=1, metavar="K",
        help="time K batches and report the least CPU per request (a loaded machine adds)",
    )  # fmt: skip
    parser.add_argument("--dump", metavar="PREFIX", help="write the profiles to PREFIX-*.prof")
    args = parser.parse_args()
    args.only = set(args.only.split(","))
    for kind in ("sqlite", "postgres") if args.db == "both" else (args.db,):
        with database(kind) as url, tempfile.TemporaryDirectory(prefix="cs-cpu-") as folder:
            ours = countersign(kind, url, folder, args)
        if "bare" not in args.only:
            continue
        with database(kind) as url:
            floor = bare(kind, url, args)
        for what, ms in ours.items():
            print(f"  {what} ({kind}): bare / countersign CPU = {floor[what] / ms:.2f}")


if __name__ == "__main__":
    main()
