"""How long a flip of the kill switch takes with many undecided deferrals.

    .venv/bin/python bench/kill.py [--db sqlite|postgres|both] [--pending 1000]

In-process, on a fresh database: an agent with a callback URL gets --pending deferrals
(a batch of them in a reviewer's hands), then its owner kills it. The flip is one transaction: the
agent's state, every undecided deferral ended as killed with its callback row and audit
event, and agent.killed. The baseline, in the same run, is the flip of an agent with
no deferrals. Target (issue 6): everything in effect within a second of the flip.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REDIS, database, flask_cmd  # noqa: E402

BODY = {
    "action": {"tool": "billing.refund", "args": {"invoice": "INV-1", "amount": 740}},
    "summary": "Refund $740 to customer C-88319",
    "on_behalf_of": {"id": "alice@example.com"},
}


def bench(kind: str, pending: int) -> tuple[float, float]:
    redis.Redis.from_url(REDIS).flushdb()
    with database(kind) as url, tempfile.TemporaryDirectory(prefix="cs-bench-") as instance:
        env = {
            "DATABASE_URL": url,
            "REDIS_URL": REDIS,
            "COUNTERSIGN_INSTANCE_DIR": instance,
            "COUNTERSIGN_ALLOW_PRIVATE_CALLBACKS": "1",
            "COUNTERSIGN_AGENT_RATE": "0",
            "COUNTERSIGN_AGENT_MAX_PENDING": "0",
            "COUNTERSIGN_BREAKER_FLOOD": "0",
        }
        flask_cmd(env, "db", "upgrade")
        flask_cmd(env, "users", "create", "owner", "--role", "admin", stdin="bench-password\n")
        for slug in ("idle-bot", "busy-bot"):
            flask_cmd(env, "agents", "create", slug, "--owner", "owner",
                      "--callback-url", "http://127.0.0.1:9/hooks")  # fmt: skip
        os.environ.update(env)
        from review.agents.killswitch import Actor, kill
        from review.app_factory import create_app  # noqa: PLC0415
        from review.intake import deferrals, preparation
        from review.reviewing.claims import Holder, claim_batch
        from review.users import find_user

        app = create_app()
        svc = app.extensions["countersign"]
        with svc.db.read() as session:
            busy = svc.secrets.signer(session, "busy-bot")
            owner = find_user(session, "owner")
        for _ in range(pending):
            prepared = preparation.prepare(svc, json.loads(json.dumps(BODY)))
            deferrals.create_deferral(svc, busy, f"msg_{uuid.uuid4().hex}", prepared)
        holder = Holder(owner.id, "owner", frozenset({"owner"}))
        claim_batch(svc, holder)
        actor = Actor("user", "owner")
        started = time.perf_counter()
        kill(svc, "idle-bot", actor, "baseline")
        idle = time.perf_counter() - started
        started = time.perf_counter()
        flip = kill(svc, "busy-bot", actor, "bench")
        busy_seconds = time.perf_counter() - started
        assert flip.ended == pending, flip
        svc.close()
    return idle, busy_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--pending", type=int, default=1000)
    args = parser.parse_args()
    for kind in ["sqlite", "postgres"] if args.db == "both" else [args.db]:
        idle, busy = bench(kind, args.pending)
        verdict = "ok" if busy < 1.0 else "MISSES TARGET"
        print(
            f"{kind:<9} flip with {args.pending} undecided: {busy * 1000:7.1f} ms"
            f"   (no deferrals: {idle * 1000:5.1f} ms, ratio {busy / idle:5.1f})"
            f"   {verdict}: < 1 s"
        )


if __name__ == "__main__":
    main()
