"""Where an intake's time goes through gunicorn: each request split by step.

    .venv/bin/python bench/intake_split.py [--db sqlite|postgres] [--requests 3000]
                                           [--concurrency 8]

Countersign as bench/intake.py serves it (gunicorn, BENCH_WORKERS x BENCH_THREADS, the
same signed deferrals), but its app is bench/split_app.py's: the steps of intake
wrapped, each request's wall time per step, its thread's CPU and the garbage
collector's passes written by the workers, read back here. Per step: the mean, p50, p99
and longest over all requests, and the mean over the slowest 1% (by time in the app),
which is where the p99 comes from. The clients' own p50/p99 include what the app does
not see: gunicorn's queue for a thread, HTTP parsing, the wait for the GIL before the
app is entered and after it returns. Instrumentation costs a little CPU per step; the
split is for finding where the tail is, not for throughput (bench/intake.py).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, database, drive, gunicorn  # noqa: E402
from bench.intake import BODY, countersign_env  # noqa: E402
from review.signing import sign_headers  # noqa: E402

PATH = "/api/v1/agents/bench-bot/deferrals"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="cs-split-")
    out = os.path.join(folder, "split")
    with database(args.db) as url, tempfile.TemporaryDirectory(prefix="cs-bench-") as instance:
        pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        env, secret = countersign_env(url, instance, PYTHONPATH=pythonpath, SPLIT_OUT=out)
        raw = json.dumps(BODY).encode()

        def signed(count: int) -> list[tuple[str, bytes, dict[str, str]]]:
            requests = []
            for _ in range(count):
                headers = sign_headers(secret, f"msg_{uuid.uuid4().hex}", raw)
                headers["Content-Type"] = "application/json"
                requests.append((PATH, raw, headers))
            return requests

        with gunicorn("split_app:app", env, cwd=ROOT / "bench") as base:
            drive("warm-up", base, signed(200), args.concurrency)
            for _ in range(16):  # each worker writes what it holds (several times over)
                httpx.get(base + "/_split_flush")
            for name in glob.glob(out + ".*"):
                os.remove(name)
            result = drive(
                f"intake, split ({args.db})", base, signed(args.requests), args.concurrency
            )
            load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
            for _ in range(16):
                httpx.get(base + "/_split_flush")
    report(out, result, load)


def report(out: str, result, load: str) -> None:
    records, checkpoints, gc_passes = [], [], []
    for name in glob.glob(out + ".*"):
        for line in Path(name).read_text().splitlines():
            entry = json.loads(line)
            if "checkpoint" in entry:
                checkpoints.append(entry["checkpoint"][1])
            elif "gc" in entry:
                gc_passes.append(entry["gc"])
            elif entry.get("path") == PATH:
                records.append(entry)
    print(load)
    print(result.line())
    in_app = [r["in the app"] for r in records]
    slowest = [r for r in records if r["in the app"] >= percentile(in_app, 99)]
    print(f"{len(records)} requests seen by the app; the slowest 1%: {len(slowest)}")
    print(f"{'ms per request':42} {'mean':>7} {'p50':>7} {'p99':>7} {'max':>7} {'slowest 1%':>10}")
    labels = sorted({k for r in records for k in r if k != "path"})
    for label in labels:
        values = [r.get(label, 0.0) for r in records]
        tail = statistics.fmean(r.get(label, 0.0) for r in slowest)
        print(
            f"{label:42} {statistics.fmean(values):7.2f} {percentile(values, 50):7.2f} "
            f"{percentile(values, 99):7.2f} {max(values):7.2f} {tail:10.2f}"
        )
    led = sum(r.get("group commits led", 0) for r in records)
    if led:
        print(f"commits: {led:.0f} for {len(records)} intakes ({len(records) / led:.2f} a commit)")
    if checkpoints:
        print(
            f"background WAL checkpoints: {len(checkpoints)}, ms p50 "
            f"{percentile(checkpoints, 50):.1f}, p99 {percentile(checkpoints, 99):.1f}, "
            f"longest {max(checkpoints):.1f}"
        )
    for generation in (0, 1, 2):
        took = [ms for gen, ms in gc_passes if gen == generation]
        if took:
            print(f"gc generation {generation}: {len(took)} passes, longest {max(took):.1f} ms")


if __name__ == "__main__":
    main()
