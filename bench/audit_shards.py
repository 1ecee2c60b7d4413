"""Chained writes a second with 1, 2 and 4 writing processes, one chain against several.

    .venv/bin/python bench/audit_shards.py [--shards 1,4] [--procs 1,2,4] [--writes 150]

For each shard count (COUNTERSIGN_AUDIT_SHARDS, recorded when the database is made) and
each number of processes, a fresh PostgreSQL database; every process runs the service
(no HTTP: the API's own view through Flask's test client, as bench/audit_lock.py does)
with an agent and a reviewer of its own, and does `--writes` intakes, then claims and
decides them one by one. All processes start together; the rate is every process's
writes over the wall-clock time from the first start to the last end.

Per write it also times the chain lock as bench/audit_lock.py does: from the statement
that takes it (or the intake function's call) to the end of the commit, so with several
processes this includes waiting for the lock, which is what shards remove.

Each process has its own agent and reviewer on purpose: an agent's row (its undecided
count) and a reviewer's decisions (their lease renewal) serialise their own writes
whatever the shards, so one agent or one reviewer has its own ceiling
(docs/SCALING.md). The processes share this machine's CPUs with the database.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REDIS, database, flask_cmd  # noqa: E402

SETTINGS = {
    "COUNTERSIGN_AGENT_RATE": "1000000",
    "COUNTERSIGN_AGENT_MAX_PENDING": "1000000",
    "COUNTERSIGN_BREAKER_FLOOD": "1000000/60",
    "COUNTERSIGN_BREAKER_REJECTIONS": "0",  # 0: off
    "COUNTERSIGN_TWO_PERSON_LEVEL": "none",
    "COUNTERSIGN_BATCH_SIZE": "20",
    "COUNTERSIGN_UNDO_SECONDS": "0",  # decisions take effect in their own transaction
}


def worker(env: dict, slug: str, secret: str, reviewer: str, writes: int, start: float, out):
    os.environ.update(env)
    from bench.audit_lock import LockTimer  # noqa: PLC0415
    from bench.intake import BODY  # noqa: PLC0415
    from review.app_factory import create_app  # noqa: PLC0415
    from review.reviewing.claims import Holder, claim_batch  # noqa: PLC0415
    from review.reviewing.decisions import decide  # noqa: PLC0415
    from review.signing import sign_headers  # noqa: PLC0415
    from review.users import find_user  # noqa: PLC0415

    app = create_app()
    svc = app.extensions["countersign"]
    client = app.test_client()
    raw = json.dumps(BODY).encode()
    with svc.db.read() as session:
        user = find_user(session, reviewer)
        holder = Holder(user.id, user.username, frozenset({user.username}))
    timer = LockTimer()
    timer.install()
    time.sleep(max(0.0, start - time.time()))
    began = time.time()
    for _ in range(writes):
        headers = sign_headers(secret, f"msg_{uuid.uuid4().hex}", raw)
        headers["Content-Type"] = "application/json"
        answer = client.post(f"/api/v1/agents/{slug}/deferrals", data=raw, headers=headers)
        assert answer.status_code == 202, answer.get_data(as_text=True)
    intake_end = time.time()
    intake_locks, _ = timer.take()
    decided, decision_locks = 0, []
    while decided < writes:
        ids = claim_batch(svc, holder)
        timer.take()  # claims are not counted here
        if not ids:
            break
        for deferral_id in ids:
            decide(svc, holder, deferral_id, "approve")
            decided += 1
        decision_locks += timer.take()[0]
    out.put(
        {
            "intake": (began, intake_end, writes, intake_locks),
            "decision": (intake_end, time.time(), decided, decision_locks),
        }
    )
    svc.close()


def run(shards: int, procs: int, writes: int) -> dict[str, tuple[float, float]]:
    with database("postgres") as url, tempfile.TemporaryDirectory(prefix="cs-bench-") as folder:
        env = {
            "DATABASE_URL": url,
            "REDIS_URL": REDIS,
            "COUNTERSIGN_INSTANCE_DIR": folder,
            "COUNTERSIGN_AUDIT_SHARDS": str(shards),
            **SETTINGS,
        }
        flask_cmd(env, "db", "upgrade")
        flask_cmd(env, "users", "create", "owner", "--role", "admin", stdin="bench-password\n")
        people = []
        for n in range(procs):
            reviewer, slug = f"rita{n}", f"bench-bot-{n}"
            flask_cmd(env, "users", "create", reviewer, "--role", "reviewer", stdin="pw-bench-1\n")
            secret = flask_cmd(env, "agents", "create", slug, "--owner", "owner").split()[-1]
            people.append((slug, secret, reviewer))
        context = multiprocessing.get_context("spawn")
        out = context.Queue()
        start = time.time() + 8  # every process has built its app by then
        workers = [
            context.Process(target=worker, args=(env, *p, writes, start, out)) for p in people
        ]
        for w in workers:
            w.start()
        results = [out.get(timeout=1800) for _ in workers]
        for w in workers:
            w.join()
        summary = {}
        for kind in ("intake", "decision"):
            began = min(r[kind][0] for r in results)
            ended = max(r[kind][1] for r in results)
            done = sum(r[kind][2] for r in results)
            locks = [s for r in results for s in r[kind][3]]
            summary[kind] = (done / (ended - began), statistics.median(locks) * 1000)
        return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shards", default="1,4")
    parser.add_argument("--procs", default="1,2,4")
    parser.add_argument("--writes", type=int, default=150, help="intakes (and decisions) each")
    args = parser.parse_args()
    shard_counts = [int(s) for s in args.shards.split(",")]
    proc_counts = [int(p) for p in args.procs.split(",")]
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for procs in proc_counts:
        for shards in shard_counts:
            summary = run(shards, procs, args.writes)
            for kind, (rate, lock_ms) in summary.items():
                print(
                    f"postgres: {procs} processes, {shards} shards: {kind:<8} {rate:7.1f}/s, "
                    f"chain lock (wait + hold) p50 {lock_ms:6.2f} ms",
                    flush=True,
                )
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
