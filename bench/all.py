"""Every benchmark in quick mode, then one table of what each measured against its target.

    make bench                          # = .venv/bin/python bench/all.py
    .venv/bin/python bench/all.py --only intake,audit --db sqlite

Quick mode: fewer requests and rounds than each benchmark's own defaults, so the whole
set takes minutes, not an hour; the figures are for spotting a regression, and the
README's tables come from the full runs (each row's command). Each benchmark runs in its
own process; its whole output is kept in bench-results/<name>.txt and its verdict lines
(the ones that compare with a target) make the table. Not run in CI: they are timed, and
CI machines are shared.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench-results"


@dataclass(frozen=True)
class Bench:
    name: str
    args: tuple[str, ...]  # quick mode; `--db` is added where the benchmark takes it
    verdict: str  # a regular expression for the output lines that carry the result
    target: str
    takes_db: bool = True


BENCHES = (
    Bench(
        "intake",
        ("--requests", "500", "--rounds", "1"),
        r"intake / bare throughput",
        ">= 0.60 of the bare floor, p99 < 35 ms (issue 20)",
    ),
    Bench(
        "status",
        ("--requests", "1500", "--rounds", "1"),
        r"status / bare|req/s",
        ">= 1,000 req/s on one worker, >= 0.8 of bare JSON (issue 20)",
    ),
    Bench(
        "kill",
        ("--pending", "500"),
        r"flip with",
        "every deferral ended within 1 s of the flip (issue 6)",
    ),
    Bench(
        "delivery",
        ("--callbacks", "300", "--samples", "30"),
        r"one worker",
        "decision -> callback p50 < 100 ms, >= 300 callbacks/s (issue 6)",
    ),
    Bench(
        "policy_allow",
        ("--requests", "100"),
        r"p50",
        "an allow decision's server time p50 < 10 ms (issue 16)",
    ),
    Bench(
        "queue_scale",
        ("--large", "10000"),
        r"ratio",
        "queue page at the large size <= 1.5x its time at 100 (issue 4)",
    ),
    Bench(
        "audit",
        ("--events", "100000"),
        r"verify",
        "verify a million events < 5 s (issue 20); here 100,000",
    ),
    Bench(
        "audit_lock",
        ("--writes", "100"),
        r"lock held",
        "measured, no target: the installation's ceiling (docs/SCALING.md)",
    ),
    Bench(
        "diff_cases",
        (),
        r"KB",
        "no request held over 1 s by a diff (issue 3)",
        takes_db=False,
    ),
    Bench(
        "reviewer_screen",
        (),
        r"cards with|keys pressed|cleared",
        "5 of 5 demo cards with risk and controls on screen at 1280x720; <= 8 keys (issue 15)",
        takes_db=False,
    ),
    Bench(
        "reviewer_flow",
        ("--items", "40", "--rounds", "1", "--reviewers", "2"),
        r"decisions|/s",
        "decisions/s through the browser-facing endpoints >= 2x before (issue 15; "
        "--before-tree DIR compares in one run)",
        takes_db=False,
    ),
)


def run(bench: Bench, db: str) -> tuple[list[str], float, int]:
    script = ROOT / "bench" / f"{bench.name}.py"
    args = [*bench.args, *(("--db", db) if bench.takes_db else ())]
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(script), *args], cwd=ROOT, capture_output=True, text=True
    )
    seconds = time.monotonic() - started
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{bench.name}.txt").write_text(
        f"$ {script.name} {' '.join(args)}\n{done.stdout}{done.stderr}"
    )
    lines = [line.strip() for line in done.stdout.splitlines() if re.search(bench.verdict, line)]
    return lines, seconds, done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--only", help="comma-separated benchmark names")
    args = parser.parse_args()
    chosen = [b for b in BENCHES if (ROOT / "bench" / f"{b.name}.py").exists()]
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {b.name for b in BENCHES}
        if unknown:
            parser.error(f"no such benchmark: {', '.join(sorted(unknown))}")
        chosen = [b for b in chosen if b.name in wanted]
    table = []
    for bench in chosen:
        print(f"running {bench.name} ...", flush=True)
        lines, seconds, code = run(bench, args.db)
        if code != 0:
            lines = [f"FAILED (exit {code}): see bench-results/{bench.name}.txt"]
        table.append((bench, lines or ["(no result line: see bench-results)"], seconds))
    print()
    for bench, lines, seconds in table:
        print(f"== {bench.name} ({seconds:.0f} s)   target: {bench.target}")
        for line in lines:
            print(f"   {line}")
    missed = [b.name for b, lines, _ in table if any("MISSES" in x or "FAILED" in x for x in lines)]
    print()
    print("missed or failed: " + (", ".join(missed) if missed else "none"))


if __name__ == "__main__":
    main()
