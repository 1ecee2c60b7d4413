"""The audit log at a million events: verify, page, export.

    .venv/bin/python bench/audit.py [--db sqlite|postgres|both] [--events 1000000]

A fresh database gets --events chained events (written in bulk, hashed as the service
hashes them), then, in the same run:

- `audit verify` (the chain and a checkpoint) against two baselines in the same run:
  only reading the rows through the same driver cursor, and session 4's verify (Core
  rows in keyset pages, each record through json's encoder); target (issue 20): under
  5 s for a million on both databases, every hash recomputed from the stored fields;
- /audit's queries (newest page, a page half-way down by keyset, a filter by type)
  at the full size against the same queries at 1,000 events, as ratios;
- a JSONL export, streamed, with its peak Python memory (tracemalloc) at the full size
  against a tenth of it: flat memory means the two are close.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REDIS, database, flask_cmd  # noqa: E402

TYPES = ["deferral.received", "deferral.evaluated", "deferral.approved", "callback.attempted"]


def fill(svc, n: int) -> None:
    """n events, four to a deferral, each in its deferral's shard (as the service places
    them), written in batches straight into the tables, heads moved to match."""
    from sqlalchemy import func, insert, select, text, update

    from review.audit.hashing import event_hash, payload_json, shard_of
    from review.audit.verify import read_heads
    from review.models import AuditEvent, AuditHead, utcnow

    start = utcnow() - timedelta(seconds=n)
    rows: list[dict] = []
    with svc.db.read() as session:
        heads = read_heads(session)
        seq0 = session.scalar(select(func.max(AuditEvent.seq))) or 0
    shards = len(heads)
    for i in range(1, n + 1):
        seq = seq0 + i
        deferral_id = f"dfr_{i // 4:026d}"
        shard = shard_of(deferral_id, shards)
        place, prev = heads[shard]
        row = {
            "seq": seq,
            "at": start + timedelta(seconds=i),
            "actor_kind": "agent",
            "actor_id": f"bot-{i % 7}",
            "event_type": TYPES[i % len(TYPES)],
            "agent": f"bot-{i % 7}",
            "deferral_id": deferral_id,
            "payload": payload_json({"i": i, "summary": "Refund $740 to customer C-88319"}),
            "prev_hash": prev,
            "shard": shard,
            "shard_seq": place + 1,
        }
        row["hash"] = event_hash(**row)
        heads[shard] = (place + 1, row["hash"])
        rows.append(row)
        if len(rows) == 20000 or i == n:
            with svc.db.write() as session:
                session.execute(insert(AuditEvent.__table__), rows)
                for s_, (place_, hash_) in heads.items():
                    session.execute(
                        update(AuditHead)
                        .where(AuditHead.shard == s_)
                        .values(seq=place_, hash=hash_)
                    )
                if not svc.db.is_sqlite:  # the global seq's sequence must not hand these out
                    session.execute(text("SELECT setval('audit_event_seq', :s)"), {"s": seq})
            rows = []


def verify_as_in_session_4(session) -> int:
    """Session 4's verify, kept as this run's baseline: Core rows in keyset pages, each
    event's record through json's encoder with sorted keys."""
    import hashlib
    import json

    from review.audit.hashing import GENESIS_HASH, format_time
    from review.audit.verify import iter_rows

    encoder = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    prev_hashes: dict[int, str] = {}  # each shard's chain (session 4 had one)
    count = 0
    for row in iter_rows(session):
        assert row.prev_hash == prev_hashes.get(row.shard, GENESIS_HASH)
        record = {
            "seq": row.seq,
            "at": format_time(row.at),
            "actor_kind": row.actor_kind,
            "actor_id": row.actor_id,
            "event_type": row.event_type,
            "agent": row.agent,
            "deferral_id": row.deferral_id,
            "payload_sha256": hashlib.sha256(row.payload.encode()).hexdigest(),
            "prev_hash": row.prev_hash,
        }
        if row.shard_seq is not None:
            record.update(shard=row.shard, shard_seq=row.shard_seq)
        assert hashlib.sha256(encoder.encode(record).encode()).hexdigest() == row.hash
        prev_hashes[row.shard], count = row.hash, count + 1
    return count


def timed(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def cpu_timed(fn) -> tuple[float, float, float]:
    """Seconds of wall clock, of this process's CPU and of its finished children's CPU
    (the verify workers): the CPU moves little with other load on the machine."""
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    started, cpu = time.perf_counter(), time.process_time()
    fn()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, cpu, (after.ru_utime + after.ru_stime) - (kids.ru_utime + kids.ru_stime)


def page_queries(svc, total: int) -> dict[str, float]:
    from sqlalchemy import select

    from review.models import AuditEvent

    def run(query):
        with svc.db.read() as session:
            session.scalars(query.order_by(AuditEvent.seq.desc()).limit(51)).all()

    q = select(AuditEvent)
    return {
        "newest page": timed(lambda: run(q), 20),
        "page half-way down": timed(lambda: run(q.where(AuditEvent.seq < total // 2)), 20),
        "filter by type": timed(
            lambda: run(q.where(AuditEvent.event_type == "deferral.approved")), 20
        ),
    }


def export_peak(svc, key) -> tuple[float, int]:
    """Seconds for a JSONL export (untraced), then its peak Python memory (traced)."""
    from review.audit.export import jsonl

    def run() -> None:
        with svc.db.read() as session:
            for _line in jsonl(session, key):
                pass

    seconds = timed(run)
    tracemalloc.start()
    run()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return seconds, peak


def bench(kind: str, n: int) -> None:
    with database(kind) as url, tempfile.TemporaryDirectory(prefix="cs-bench-") as instance:
        env = {"DATABASE_URL": url, "REDIS_URL": REDIS, "COUNTERSIGN_INSTANCE_DIR": instance}
        flask_cmd(env, "db", "upgrade")
        os.environ.update(env)
        from review.app_factory import create_app  # noqa: PLC0415
        from review.audit import checkpoints
        from review.audit.verify import iter_hash_batches

        app = create_app()
        svc = app.extensions["countersign"]
        key = checkpoints.load_key(svc.settings.audit_key_file)
        small, tenth = 1000, max(1000, n // 10)
        fill(svc, small)
        pages_small = page_queries(svc, small)
        fill(svc, tenth - small)
        _, peak_small = export_peak(svc, key)
        started = time.perf_counter()
        fill(svc, n - tenth)
        print(f"{kind}: wrote {n - tenth} more events in {time.perf_counter() - started:.1f} s")
        checkpoints.take(svc, force=True)

        def read_only():  # the same cursor and batches as verify, no hashing
            with svc.db.read() as session:
                for rows in iter_hash_batches(session):
                    for _ in rows:
                        pass

        def session_4_verify():
            with svc.db.read() as session:
                assert verify_as_in_session_4(session) == n

        def verify_all(jobs=1):
            with svc.db.read() as session:
                result = checkpoints.verify_log(session, key, jobs=jobs)
            assert result.ok and result.count == n, result.describe()

        jobs = min(os.cpu_count() or 1, 4)

        read_s, read_cpu, _ = cpu_timed(read_only)
        verify_s, verify_cpu, _ = cpu_timed(verify_all)
        parallel_s, parallel_cpu, workers_cpu = cpu_timed(lambda: verify_all(jobs))
        before_s = timed(session_4_verify)
        pages = page_queries(svc, n)
        export_s, peak = export_peak(svc, key)
        print(
            f"  verify {n} events: {verify_s:6.1f} s, CPU {verify_cpu:5.1f} s   (reading the rows "
            f"alone {read_s:5.1f} s, CPU {read_cpu:5.1f} s; session 4's verify {before_s:5.1f} s, "
            f"{before_s / verify_s:.1f}x slower)\n"
            f"  verify with --jobs {jobs}: {parallel_s:6.1f} s, CPU {parallel_cpu:5.1f} s here and "
            f"{workers_cpu:5.1f} s in the workers   "
            f"{'ok' if min(verify_s, parallel_s) < 5 else 'MISSES TARGET (5 s)'}   "
            f"(load average {os.getloadavg()[0]:.1f})"
        )
        for name, seconds in pages.items():
            ratio = seconds / pages_small[name]
            print(
                f"  /audit {name:<20} {seconds * 1000:6.2f} ms at {n}, "
                f"{pages_small[name] * 1000:6.2f} ms at {small} (ratio {ratio:.2f})"
            )
        print(
            f"  export JSONL: {export_s:5.1f} s, peak Python memory {peak / 1e6:5.1f} MB "
            f"(at {tenth} events: {peak_small / 1e6:5.1f} MB)"
        )
        svc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    for kind in ["sqlite", "postgres"] if args.db == "both" else [args.db]:
        bench(kind, args.events)


if __name__ == "__main__":
    main()
