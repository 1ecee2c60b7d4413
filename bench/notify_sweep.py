"""The notification planner's cost per worker tick, with many deferrals waiting.

    .venv/bin/python bench/notify_sweep.py [--db sqlite|postgres|both] [--pending 10000]

A fresh database is seeded directly with `--pending` undecided deferrals of mixed levels
(bench/queue_scale.py's rows; half are high or critical), 20 reviewers with e-mail
addresses and e-mail configured (the SMTP server is never contacted: nothing is sent).
Then:

- backlog: sweeps until every due stage is told (each sweep plans at most 200
  deferrals per stage), the time per sweep;
- idle: the sweep when nothing is due (what every tick costs from then on), median of 40.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REDIS, database  # noqa: E402
from bench.queue_scale import seed  # noqa: E402
from review.app_factory import create_app  # noqa: E402
from review.migrate import upgrade  # noqa: E402
from review.notifications.planning import plan_due  # noqa: E402
from review.users import create_user  # noqa: E402


def measure(kind: str, pending: int) -> dict[str, float]:
    with database(kind) as url, tempfile.TemporaryDirectory(prefix="cs-bench-") as instance:
        app = create_app(
            {
                "database_url": url,
                "redis_url": REDIS,
                "instance_dir": instance,
                "smtp_url": "smtp://127.0.0.1:9",
                "mail_from": "bench@example.com",
                "escalate_after": 7 * 86400,  # the seeded rows are up to a day old
            }
        )
        svc = app.extensions["countersign"]
        upgrade(svc.db)
        seed(svc, pending)
        with svc.db.write() as session:
            for i in range(20):
                create_user(session, f"r{i}", "reviewer", "bench-password", email=f"r{i}@ex.com")
        sweeps, backlog = 0, []
        while True:
            start = time.perf_counter()
            written = plan_due(svc)
            backlog.append((time.perf_counter() - start) * 1000)
            sweeps += 1
            if not written:
                break
        idle = []
        for _ in range(40):
            start = time.perf_counter()
            plan_due(svc)
            idle.append((time.perf_counter() - start) * 1000)
        svc.close()
        return {
            "sweeps": sweeps,
            "backlog_ms_per_sweep": statistics.median(backlog[:-1] or backlog),
            "idle_ms": statistics.median(idle),
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--pending", type=int, default=10000)
    args = parser.parse_args()
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    for kind in kinds:
        r = measure(kind, args.pending)
        print(
            f"{kind}: {args.pending} undecided; backlog told in {r['sweeps']} sweeps,"
            f" {r['backlog_ms_per_sweep']:.0f} ms per sweep (median);"
            f" idle sweep {r['idle_ms']:.1f} ms (median of 40)"
        )


if __name__ == "__main__":
    main()
