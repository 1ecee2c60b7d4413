"""How long one write holds the audit chain's lock, and the ceiling that implies.

    .venv/bin/python bench/audit_lock.py [--db sqlite|postgres|both] [--writes 400]

Every write in Countersign appends to one hash chain under one lock: on PostgreSQL the
`audit_head` row lock (taken by the intake function, or by `lock_chain` as a decision's
first statement), on SQLite the database's one write lock. However many web processes
and hosts serve an installation, chained writes happen one at a time, so the lock's hold
time is the ceiling of the whole installation: 1 / hold time writes per second.

This runs the service in this process (no HTTP, one thread, so there is no waiting for
the lock and what is timed is holding it) and times, per write, from the statement that
takes the lock to the end of the commit: intake (signed deferrals through the API's own
view) and decisions (claim a batch, approve each item). The intake time includes the
intake function's own work before it locks, so it is an upper bound.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REDIS, database, flask_cmd  # noqa: E402
from bench.intake import BODY  # noqa: E402

# PostgreSQL's statements that take a chain lock (review/audit/chain.py lock_chain; the
# intake function locks inside countersign_intake, other appends in countersign_append).
LOCKING = ("FOR UPDATE", "countersign_intake(", "countersign_append(")


class LockTimer:
    """Times each transaction from its first locking statement to the end of its commit."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.samples: list[float] = []
        self.statements: list[int] = []  # statements run while holding it, per write

    def install(self) -> None:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine
        from sqlalchemy.orm import Session

        from review.intake import deferrals

        event.listen(Engine, "before_cursor_execute", self._statement)
        deferrals.call_intake = self._timed_intake(deferrals.call_intake)
        event.listen(Engine, "begin", self._begin)
        event.listen(Session, "after_commit", self._committed)
        event.listen(Session, "after_rollback", self._forget)

    def _begin(self, conn) -> None:
        # SQLite: review/db.py begins a write IMMEDIATE on the driver, below the statements
        # seen here; the write lock is held from then on.
        if conn.dialect.name == "sqlite" and conn.get_execution_options().get("sqlite_immediate"):
            self.local.t0 = time.perf_counter()
            self.local.statements = 0

    def _statement(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if getattr(self.local, "t0", None) is None and any(s in statement for s in LOCKING):
            self.local.t0 = time.perf_counter()
            self.local.statements = 0
        if getattr(self.local, "t0", None) is not None:
            self.local.statements += 1

    def _timed_intake(self, call_intake):
        # PostgreSQL's intake is one autocommit call of countersign_intake, on the driver
        # (no SQLAlchemy event sees it): its lock is held from inside the call to the
        # statement's end, with no session to commit. Timed with its checkout.
        def timed(svc, params):
            t0 = time.perf_counter()
            try:
                return call_intake(svc, params)
            finally:
                self.samples.append(time.perf_counter() - t0)
                self.statements.append(1)

        return timed

    def _committed(self, session) -> None:
        t0 = getattr(self.local, "t0", None)
        if t0 is not None:
            self.samples.append(time.perf_counter() - t0)
            self.statements.append(self.local.statements)
        self.local.t0 = None

    def _forget(self, session) -> None:
        self.local.t0 = None

    def take(self) -> tuple[list[float], list[int]]:
        taken = (self.samples, self.statements)
        self.samples, self.statements = [], []
        return taken


def run(kind: str, writes: int) -> dict[str, tuple[list[float], list[int]]]:
    with database(kind) as url, tempfile.TemporaryDirectory(prefix="cs-bench-") as instance:
        env = {
            "DATABASE_URL": url,
            "REDIS_URL": REDIS,
            "COUNTERSIGN_INSTANCE_DIR": instance,
            "COUNTERSIGN_AGENT_RATE": "1000000",
            "COUNTERSIGN_AGENT_MAX_PENDING": "1000000",
            "COUNTERSIGN_BREAKER_FLOOD": "1000000/60",
            "COUNTERSIGN_BREAKER_REJECTIONS": "0",  # 0: off
            "COUNTERSIGN_TWO_PERSON_LEVEL": "none",
            "COUNTERSIGN_BATCH_SIZE": "20",
            "COUNTERSIGN_UNDO_SECONDS": "0",  # a decision takes effect in its own transaction
        }
        flask_cmd(env, "db", "upgrade")
        flask_cmd(env, "users", "create", "owner", "--role", "admin", stdin="bench-password\n")
        flask_cmd(env, "users", "create", "rita", "--role", "reviewer", stdin="bench-password\n")
        secret = flask_cmd(env, "agents", "create", "bench-bot", "--owner", "owner").split()[-1]
        os.environ.update(env)
        from review.app_factory import create_app  # noqa: PLC0415
        from review.reviewing.claims import Holder, claim_batch
        from review.reviewing.decisions import decide
        from review.signing import sign_headers
        from review.users import find_user

        app = create_app()
        svc = app.extensions["countersign"]
        client = app.test_client()
        raw = json.dumps(BODY).encode()
        timer = LockTimer()
        timer.install()
        for _ in range(writes):
            headers = sign_headers(secret, f"msg_{uuid.uuid4().hex}", raw)
            headers["Content-Type"] = "application/json"
            answer = client.post("/api/v1/agents/bench-bot/deferrals", data=raw, headers=headers)
            assert answer.status_code == 202, answer.get_data(as_text=True)
        intake = timer.take()
        with svc.db.read() as session:
            rita = find_user(session, "rita")
            holder = Holder(rita.id, rita.username, frozenset({rita.username}))
        decided = 0
        claims: tuple[list[float], list[int]] = ([], [])
        decisions: tuple[list[float], list[int]] = ([], [])
        while decided < writes:
            ids = claim_batch(svc, holder)
            for mine, taken in zip(claims, timer.take(), strict=True):
                mine += taken
            if not ids:
                break
            for deferral_id in ids:
                decide(svc, holder, deferral_id, "approve")
                decided += 1
            for mine, taken in zip(decisions, timer.take(), strict=True):
                mine += taken
        svc.close()
        return {"intake": intake, "claim a batch": claims, "decision": decisions}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--writes", type=int, default=400)
    args = parser.parse_args()
    for kind in ["sqlite", "postgres"] if args.db == "both" else [args.db]:
        for name, (samples, statements) in run(kind, args.writes).items():
            if not samples:
                print(f"{kind}: {name}: no samples")
                continue
            p50 = statistics.median(samples) * 1000
            p90 = statistics.quantiles(samples, n=10)[-1] * 1000 if len(samples) > 9 else p50
            print(
                f"{kind}: {name:<14} lock held p50 {p50:6.2f} ms, p90 {p90:6.2f} ms "
                f"({len(samples)} writes, {statistics.median(statements):.0f} statements "
                f"under the lock): ceiling {1000 / p50:5.0f} of these a second"
            )


if __name__ == "__main__":
    main()
