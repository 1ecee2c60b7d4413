"""What one reviewer's decision costs the server, in-process: SQL statements and time.

    .venv/bin/python bench/decision_cost.py [--db sqlite|postgres] [--items 40]
        [--profile N] [--undo-seconds S]

A fresh database of `--items` low-risk deferrals (as bench/reviewer_flow.py posts them),
one reviewer who starts batches and decides every card the way the batch page does
(POST /batch/<id>/approve as htmx, `seen_ms` 4000), through the app factory and Flask's
test client: no HTTP, no gunicorn, so the figure is the request's own work. Printed:
the decision's p50 and mean (wall time around the request), the p50 of this process's
CPU time for it (time.process_time: what other processes on a busy machine do not
inflate much; SQLite runs in-process, PostgreSQL and Redis do not), the SQL statements one
decision sends (a `before_cursor_execute` listener; statements run straight on the
SQLite driver, the audit chain's inserts, are not counted), each listed once; on PostgreSQL
also what psycopg sends, whichever layer sends it (statements through SQLAlchemy or on
the driver, the pool's ping, BEGIN, COMMIT and ROLLBACK), and its round trips: the
times it waits to read the server's answer (`Wait.R`, one per answer as small as a
decision's), counted by a wrapper on `psycopg.Connection.wait`. With
`--profile N` the N costliest functions by cumulative time under cProfile (which
inflates Python-heavy parts; read it for proportions). Uses BENCH_REDIS_URL.

`--undo-seconds S` (default 0: the decision takes effect at once): each decision is held
for its undo window (review/reviewing/undo.py), and its answer says so ("Undo (key u)
until it takes effect"); the figures above are then the held decision's. Once a batch is
decided, its held decisions are taken into effect in-process as the worker's job does
(review/reviewing/taking_effect.py take_effect_due, with a clock S + 1 s ahead), and
that is measured apart: CPU and statements per decision taken into effect (and on
PostgreSQL psycopg's round trips, the sweep's read of the due ones shared among them).
docs/REVIEWING.md ("Where a decision's time goes") has the figures.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import re
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import psycopg
from sqlalchemy import event

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REDIS, database  # noqa: E402
from bench.database_cpu import DatabaseCpu  # noqa: E402
from review.agents.registry import create_agent  # noqa: E402
from review.app_factory import create_app  # noqa: E402
from review.db import Database  # noqa: E402
from review.migrate import upgrade  # noqa: E402
from review.models import utcnow  # noqa: E402
from review.reviewing.taking_effect import take_effect_due  # noqa: E402
from review.signing import sign_headers  # noqa: E402
from review.users import create_user  # noqa: E402

PASSWORD = "bench-password"
CARD = re.compile(r'id="card-(dfr_[0-9A-Z]+)"')
TOKEN = re.compile(r'"X-CSRFToken": "([^"]+)"')
FIELD = re.compile(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"')


HELD = "Undo (key u) until it takes effect"


def build(url: str, instance: str, undo_seconds: int = 0):
    db = Database(url)
    upgrade(db)
    db.dispose()
    app = create_app(
        {
            "database_url": url,
            "redis_url": REDIS,
            "instance_dir": instance,
            "secret_key": "bench-secret-key-" + "x" * 32,
            "undo_seconds": undo_seconds,
            "agent_rate": 0,
            "agent_max_pending": 0,
            "batch_size": 5,
            "breaker_flood": "0",  # runs one after another share the Redis counters
        }
    )
    svc = app.extensions["countersign"]
    with svc.db.write() as session:
        create_user(session, "olivia", "reviewer", PASSWORD)
        create_user(session, "rita", "reviewer", PASSWORD)
        secret = create_agent(session, svc.box, "bench-bot", ["olivia"]).secret
    return app, svc, secret


def defer_all(app, secret: str, n: int) -> None:
    client = app.test_client()
    for i in range(n):
        body = json.dumps(
            {
                "action": {"tool": "notes.add", "args": {"note": f"bench {i}"}},
                "summary": f"Add note {i}",
                "on_behalf_of": {"id": "alice@example.com"},
                "risk": {"score": 0},
            }
        ).encode()
        headers = sign_headers(secret, f"msg_{uuid.uuid4().hex}", body)
        headers["Content-Type"] = "application/json"
        r = client.post("/api/v1/agents/bench-bot/deferrals", data=body, headers=headers)
        assert r.status_code == 202, r.get_data(as_text=True)


def logged_in(app):
    """A test client logged in as rita, its CSRF token, and the htmx headers of a decision."""
    client = app.test_client()
    token = FIELD.search(client.get("/login").get_data(as_text=True)).group(1)
    client.post("/login", data={"username": "rita", "password": PASSWORD, "csrf_token": token})
    csrf = TOKEN.search(client.get("/queue").get_data(as_text=True)).group(1)
    return client, csrf, {"X-CSRFToken": csrf, "HX-Request": "true"}


class WireCount:
    """PostgreSQL: what psycopg sends and how often it waits for the server, while `on`."""

    def __init__(self) -> None:
        self.on = False
        self.sent: list[str] = []
        self.round_trips = 0
        count = self
        wait, execute, command = (
            psycopg.Connection.wait,
            psycopg.Cursor.execute,
            psycopg.Connection._exec_command,
        )

        def counted_wait(conn, gen, *args, **kwargs):
            if not count.on:
                return wait(conn, gen, *args, **kwargs)
            return wait(conn, count._watched(gen), *args, **kwargs)

        def counted_execute(cursor, query, *args, **kwargs):
            try:
                return execute(cursor, query, *args, **kwargs)
            finally:  # after it: a BEGIN it sends first is listed first
                if count.on:
                    count.sent.append(" ".join(str(query).split()))

        def counted_command(conn, command_, *args, **kwargs):
            if count.on:
                count.sent.append(
                    bytes(command_).decode() if isinstance(command_, bytes) else str(command_)
                )
            return command(conn, command_, *args, **kwargs)

        psycopg.Connection.wait = counted_wait
        psycopg.Cursor.execute = counted_execute
        psycopg.Connection._exec_command = counted_command

    def _watched(self, gen):
        try:
            ready = gen.send(None)
            while True:
                if ready == psycopg.waiting.Wait.R:
                    self.round_trips += 1
                ready = gen.send((yield ready))
        except StopIteration as stop:
            return stop.value

    def reset(self) -> None:
        self.sent, self.round_trips = [], 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--items", type=int, default=40)
    parser.add_argument("--profile", type=int, default=0, metavar="N")
    parser.add_argument("--undo-seconds", type=int, default=0, metavar="S")
    args = parser.parse_args()
    answer = HELD if args.undo_seconds else "Approved."
    with database(args.db) as url, tempfile.TemporaryDirectory(prefix="cs-bench-") as instance:
        app, svc, secret = build(url, instance, args.undo_seconds)
        defer_all(app, secret, args.items)
        client, csrf, headers = logged_in(app)
        counting, statements = [False], []

        @event.listens_for(svc.db.engine, "before_cursor_execute")
        def count(conn, cursor, statement, params, context, executemany):
            if counting[0]:
                statements.append(" ".join(statement.split()))

        wire = WireCount() if args.db == "postgres" else None
        wires: list[tuple[int, list[str]]] = []
        profile = cProfile.Profile() if args.profile else None
        times, cpus, per_decision, starts = [], [], [], []
        effect_cpus, effect_statements, effect_trips, taken = [], [], [], 0
        start_wires: list[tuple[int, list[str]]] = []
        backends = DatabaseCpu(url) if wire else None
        start_db_cpus, db_cpus = [], []
        while True:
            if wire:
                db_cpu = backends.used()
                wire.reset()
                wire.on = True
            start = time.perf_counter()
            page = client.post(
                "/batch/start", data={"csrf_token": csrf, "answer": "page"}, follow_redirects=True
            )
            starts.append((time.perf_counter() - start) * 1000)
            if wire:
                wire.on = False
                start_wires.append((wire.round_trips, wire.sent))
                start_db_cpus.append((backends.used() - db_cpu) * 1000)
            ids = list(dict.fromkeys(CARD.findall(page.get_data(as_text=True))))
            if not ids:
                break
            for d_id in ids:
                statements.clear()
                counting[0] = True
                if wire:
                    db_cpu = backends.used()
                    wire.reset()
                    wire.on = True
                if profile:
                    profile.enable()
                start, cpu = time.perf_counter(), time.process_time()
                r = client.post(
                    f"/batch/{d_id}/approve",
                    data={"csrf_token": csrf, "seen_ms": "4000"},
                    headers=headers,
                )
                times.append((time.perf_counter() - start) * 1000)
                cpus.append((time.process_time() - cpu) * 1000)
                if profile:
                    profile.disable()
                counting[0] = False
                if wire:
                    wire.on = False
                    wires.append((wire.round_trips, wire.sent))
                    db_cpus.append((backends.used() - db_cpu) * 1000)
                assert answer in r.get_data(as_text=True), r.get_data(as_text=True)[:300]
                per_decision.append(list(statements))
            if args.undo_seconds:  # the batch's held decisions, taken into effect
                statements.clear()
                counting[0] = True
                if wire:
                    wire.reset()
                    wire.on = True
                cpu = time.process_time()
                with app.app_context():
                    later = utcnow() + timedelta(seconds=args.undo_seconds + 1)
                    done = take_effect_due(svc, later)
                effect_cpus.append((time.process_time() - cpu) * 1000 / max(done, 1))
                counting[0] = False
                effect_statements.append(len(statements) / max(done, 1))
                if wire:
                    wire.on = False
                    effect_trips.append(wire.round_trips / max(done, 1))
                taken += done
        print(
            f"{args.db}: {len(times)} decisions, p50 {statistics.median(times):.1f} ms, "
            f"mean {statistics.mean(times):.1f} ms, this process's CPU p50 "
            f"{statistics.median(cpus):.1f} ms, "
            f"{statistics.median(len(s) for s in per_decision):.0f} SQL statements each:"
        )
        print(f"  (Start batch, five cards: p50 {statistics.median(starts):.1f} ms)")
        if args.undo_seconds:
            print(
                f"  held for {args.undo_seconds} s, then {taken} taken into effect"
                f" (take_effect_due per batch): CPU p50 {statistics.median(effect_cpus):.1f} ms"
                f" and {statistics.median(effect_statements):.0f} SQL statements each"
            )
            if effect_trips:  # the sweep's read of the due ones shared among them
                print(
                    f"  psycopg: {statistics.median(effect_trips):.1f} round trips per"
                    " decision taken into effect (p50 over the batches)"
                )
        for statement in per_decision[len(per_decision) // 2]:
            print("  ", statement[:150])
        if wires:
            trips = statistics.median(t for t, _ in wires)
            sent = wires[len(wires) // 2][1]
            print(
                f"  psycopg: {trips:.0f} round trips per decision (p50),"
                f" {statistics.median(len(s) for _, s in wires):.0f} statements and commands sent:"
            )
            for statement in sent:
                print("  ", statement[:150])
        if db_cpus:
            print(
                f"  PostgreSQL's backends' CPU: {statistics.mean(db_cpus):.2f} ms per decision,"
                f" {statistics.mean(start_db_cpus[:-1] or start_db_cpus):.2f} ms per Start"
                " batch (means)"
            )
        if start_wires:  # the last Start batch found nothing: not counted
            full = start_wires[:-1] or start_wires
            trips = statistics.median(t for t, _ in full)
            sent = full[len(full) // 2][1]
            print(f"  psycopg: {trips:.0f} round trips per Start batch (p50), sent:")
            for statement in sent:
                print("  ", statement[:150])
        if profile:
            pstats.Stats(profile).sort_stats("cumulative").print_stats(args.profile)
        if backends is not None:
            backends.close()
        svc.close()


if __name__ == "__main__":
    main()
