"""The queue page's server time at 100,000 pending deferrals against its time at 100.

    .venv/bin/python bench/queue_scale.py [--db sqlite|postgres|both] [--large 100000]

For each database: two fresh databases are seeded directly (Core inserts of realistic
rows with varied risk, agents and labels), then GET /queue is timed inside the app
(Flask's test client: server time, no network) for a logged-in reviewer, median of 40
requests after warm-up, for the full page and for the htmx refresh. Target (issue 4):
the time at the large size stays within 1.5x of the time at 100.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert  # noqa: E402

from bench.common import REDIS, database  # noqa: E402
from review.agents.registry import create_agent  # noqa: E402
from review.app_factory import create_app  # noqa: E402
from review.intake import priority  # noqa: E402
from review.migrate import upgrade  # noqa: E402
from review.models import Deferral, undecided_fields, utcnow  # noqa: E402
from review.users import create_user  # noqa: E402

TOOLS = ["billing.refund", "email.send", "crm.delete_contacts", "terraform.apply", "notes.add"]
LEVELS = [(10, "low"), (30, "medium"), (60, "high"), (90, "critical")]


def seed(svc, count: int) -> None:
    with svc.db.write() as session:
        create_user(session, "bench", "reviewer", "bench-password")
        agents = [
            create_agent(session, svc.box, f"agent-{i}", ["bench"]).agent.id for i in range(5)
        ]
    rng = random.Random(7)
    now = utcnow()
    rows = []
    for i in range(count):
        score, level = rng.choice(LEVELS)
        created = now - timedelta(seconds=rng.randint(0, 86000))
        expires = created + timedelta(days=1)
        rank = priority.rank(
            score,
            created,
            expires,
            default_expires_in=86400,
            age_seconds_per_point=600,
            expiry_seconds_per_point=3600,
        )
        rows.append(
            {
                "id": f"dfr_{i:026d}",
                "agent_id": rng.choice(agents),
                "webhook_id": f"w{i}",
                "request_hash": "0" * 64,
                "status": "pending",
                "tool": rng.choice(TOOLS),
                "action": {"tool": "x", "args": {"amount": i}},
                "action_digest": "sha256:" + "0" * 64,
                "summary": f"Deferral number {i} for customer C-{i % 997}",
                "principal_id": f"user{i % 50}@example.com",
                "principal_name": None,
                "rationale": None,
                "state": {},
                "diff": {"changes": [], "count": 0, "truncated": False, "note": None},
                "resource_type": None,
                "resource_id": None,
                "labels": {"env": rng.choice(["prod", "staging"])},
                "trace_id": None,
                "trace_url": None,
                "risk_score": score,
                "risk_level": level,
                "risk_factors": [],
                "agent_risk": None,
                "policy_version": "sha256:bench",
                "priority": score,
                "rank": rank,
                "created_at": created,
                "expires_at": expires,
                **undecided_fields(),
            }
        )
        if len(rows) == 5000:
            with svc.db.write() as session:
                session.execute(insert(Deferral.__table__), rows)
            rows = []
    if rows:
        with svc.db.write() as session:
            session.execute(insert(Deferral.__table__), rows)
    if svc.db.engine.dialect.name == "postgresql":
        with svc.db.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE deferrals")
    else:
        with svc.db.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")


def time_queue(app, path: str, htmx: bool, n: int = 40) -> float:
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', page).group(1)
    client.post(
        "/login", data={"username": "bench", "password": "bench-password", "csrf_token": token}
    )
    headers = {"HX-Request": "true"} if htmx else {}
    for _ in range(5):
        assert client.get(path, headers=headers).status_code == 200
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        client.get(path, headers=headers)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def measure(kind: str, size: int) -> dict[str, float]:
    with database(kind) as url, tempfile.TemporaryDirectory(prefix="cs-bench-") as instance:
        app = create_app({"database_url": url, "redis_url": REDIS, "instance_dir": instance})
        svc = app.extensions["countersign"]
        upgrade(svc.db)
        seed(svc, size)
        out = {
            "page": time_queue(app, "/queue", False),
            "refresh": time_queue(app, "/queue", True),
            "filtered": time_queue(app, "/queue?level=critical&label=env%3Dprod", True),
        }
        svc.close()
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=100_000)
    args = parser.parse_args()
    for kind in ["sqlite", "postgres"] if args.db == "both" else [args.db]:
        small, large = measure(kind, args.small), measure(kind, args.large)
        for what in small:
            ratio = large[what] / small[what]
            verdict = "ok" if ratio <= 1.5 else "MISSES TARGET"
            print(
                f"{kind:<9} {what:<9} {args.small:>7}: {small[what]:6.2f} ms   "
                f"{args.large:>7}: {large[what]:6.2f} ms   ratio {ratio:4.2f} ({verdict}: <= 1.5)"
            )


if __name__ == "__main__":
    main()
