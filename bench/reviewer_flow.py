"""Reviewers through the browser-facing endpoints: decisions per second under gunicorn.

    .venv/bin/python bench/reviewer_flow.py [--db sqlite|postgres] [--reviewers 4]
        [--items 200] [--rounds 3] [--before-tree DIR] [--undo-seconds S]

Each reviewer is an HTTP client with its own session: it logs in (GET /login for the
CSRF token, POST /login), waits until every reviewer has, and then, timed, until the queue
is empty: POST /batch/start with `answer=page`, as static/review.js sends it (which
answers with the batch page; older trees redirect to GET /batch, which is followed
and counted), and for each card the requests a browser sends for it, then the
decision (POST /batch/<id>/approve as htmx, which answers with the card). N reviewers run at once
against `gunicorn app:app` (2 gthread workers x 4 threads, bench/common.py), on a fresh
database holding `--items` low-risk deferrals posted through the signed API.

`--before-tree DIR` runs, in the same run and alternating rounds, the same flow against
another checkout of the project (e.g. `git archive 42e3859 | tar -x -C DIR`, the commit
before issue 15; its queue/ is put first on PYTHONPATH as `approval_queue`). A tree
whose pages have the route POST /batch/<id>/open (42e3859 and older) is driven as its
browser drove it: a card cost that request when it took the focus, and then its
decision. A tree without it (e.g. `git archive main` before a change) is driven as this
one: the time in view goes with the decision (`seen_ms`), no request for "opened".
Which flow each tree gets is printed at the start.

`--undo-seconds S` (default 0) sets COUNTERSIGN_UNDO_SECONDS: with 0 each decision takes
effect at once; with S > 0 (the product's default is 5) each decision is held for its
undo window and answers so ("Undo (key u) until it takes effect"), and those answers
are what is counted: held decisions per second. A reviewer holding undecided items
cannot be given more (a held decision keeps its claim until it takes effect), so the
batch size is raised to each reviewer's share of `--items` (one Start batch each); a
reviewer stops when its batch page shows no card left to decide. No worker runs in the
timed part (a Start batch page that meets a due decision takes it into effect, as in
the product; with S = 5 and a round of a few seconds, few are). After it, once the
last window has closed, a real rq worker (`flask worker --burst`, rq's scheduler on)
takes them all into effect, timed apart (wall and CPU, its start-up included), and the
bench checks that every counted decision has ended the deferral as approved.
The clock starts once every reviewer is logged in: a login is once a working day, and its
password hash (argon2, ~0.5 s for four at once here) would otherwise weigh as much as a
hundred decisions in a short round. Printed: decisions per second (median round), the
decision request's p50 and p99 as the client saw them, and one reviewer alone (p50 of a
decision with nothing else running: the server's time plus a loopback round trip), and
the server's CPU per decision over the timed part (its arbiter's and workers' user and
system time, Start batch's share included), which a busy machine inflates far less than
it does the rates. On PostgreSQL also the database's CPU per decision over the same
part: its backends' for the bench's database (`DatabaseCpu`), which run on the same
cores and which the server's figure leaves out.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    REDIS,
    ROOT,
    database,
    gunicorn,
    server_cpu_seconds,
)
from bench.database_cpu import DatabaseCpu  # noqa: E402
from review.signing import sign_headers  # noqa: E402

PASSWORD = "bench-password"
CARD = re.compile(r'id="card-(dfr_[0-9A-Z]+)"')
LIVE_CARD = re.compile(r'id="card-(dfr_[0-9A-Z]+)"[^>]*\bdata-live\b')  # not decided yet
HELD = "Undo (key u) until it takes effect"  # a decision's answer when held for undo
TOKEN = re.compile(r'"X-CSRFToken": "([^"]+)"')


def before_packages(tree: Path) -> str:
    """A folder where `approval_queue` is the other tree's queue/: the editable install
    maps that name to this checkout's queue/, which the other tree's code may not fit."""
    folder = Path(tempfile.gettempdir()) / f"cs-bench-pkgs-{os.getpid()}"
    folder.mkdir(exist_ok=True)
    link = folder / "approval_queue"
    if not link.exists():
        link.symlink_to(tree / "queue")
    return str(folder)


def opens_cards(tree: Path) -> bool:
    """Whether the tree's pages take a POST /batch/<id>/open when a card takes the focus
    (42e3859 and older): how its browser is driven."""
    route = '"/batch/<deferral_id>/open"'
    return any(route in f.read_text() for f in (tree / "review" / "web").glob("*.py"))


def flask(cwd: Path, env: dict[str, str], *args: str, stdin: str = "") -> str:
    out = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", *args],
        cwd=cwd,
        env={**os.environ, **env},
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


@dataclass
class Tally:
    decisions: int = 0
    requests: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def defer_all(base: str, secret: str, n: int) -> None:
    with httpx.Client(base_url=base, timeout=30) as client:
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
            r = client.post("/api/v1/agents/bench-bot/deferrals", content=body, headers=headers)
            assert r.status_code == 202, r.text


def reviewer(
    base: str,
    name: str,
    old_flow: bool,
    tally: Tally,
    ready: threading.Barrier | None = None,
    held: bool = False,
) -> None:
    with httpx.Client(base_url=base, timeout=60, follow_redirects=True) as client:
        page = client.get("/login").text
        token = re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', page)
        token = token or re.search(r'type="hidden" name="csrf_token" value="([^"]+)"', page)
        r = client.post(
            "/login", data={"username": name, "password": PASSWORD, "csrf_token": token.group(1)}
        )
        csrf = TOKEN.search(r.text).group(1)
        headers = {"X-CSRFToken": csrf, "HX-Request": "true"}
        if ready is not None:  # everyone logged in: the timed part starts
            ready.wait()
        while True:
            batch = client.post(
                "/batch/start", data={"csrf_token": csrf, "answer": "page"}
            )  # what static/review.js sends: the page itself, no redirect
            # Held for undo: the batch keeps its decided cards until they take effect.
            ids = list(dict.fromkeys((LIVE_CARD if held else CARD).findall(batch.text)))
            count = 1 + len(batch.history)  # the redirect to GET /batch, where there is one
            if not ids:
                break
            for d_id in ids:
                if old_flow:  # the card took the focus: "opened"
                    client.post(f"/batch/{d_id}/open", headers={"X-CSRFToken": csrf})
                    count += 1
                start = time.perf_counter()
                r = client.post(
                    f"/batch/{d_id}/approve",
                    data={"csrf_token": csrf, "seen_ms": "4000"},
                    headers=headers,
                )
                elapsed = (time.perf_counter() - start) * 1000
                count += 1
                with tally.lock:
                    tally.latencies_ms.append(elapsed)
                    tally.decisions += (HELD if held else "Approved.") in r.text
            with tally.lock:
                tally.requests += count


@dataclass
class TakingEffect:
    """The held decisions of a round taken into effect by a real worker after it."""

    taken: int = 0  # deferrals approved at the end
    wall: float = 0.0  # seconds, the worker's start-up included
    cpu: float = 0.0  # the worker process's CPU seconds, start-up included


def run_once(
    tree: Path, kind: str, reviewers: int, items: int, undo: int = 0
) -> tuple[float, Tally, float, float, float | None, TakingEffect]:
    """One round on a fresh database: decisions per second, the tally, one reviewer's p50,
    the server's CPU milliseconds per decision, PostgreSQL's (its backends', None on
    SQLite), and (held for undo) how the worker took them into effect."""
    old_flow = opens_cards(tree)
    with database(kind) as url, tempfile.TemporaryDirectory(prefix="cs-bench-") as instance:
        env = {
            "DATABASE_URL": url,
            "REDIS_URL": REDIS,
            "COUNTERSIGN_INSTANCE_DIR": instance,
            "COUNTERSIGN_AGENT_RATE": "0",
            "COUNTERSIGN_AGENT_MAX_PENDING": "0",
            # Held for undo, a reviewer is given no more until their decisions take effect.
            "COUNTERSIGN_BATCH_SIZE": str(max(5, -(-items // reviewers)) if undo else 5),
            # Rounds share one Redis, where the flood breaker counts an agent's intake:
            # two trees' rounds post more than its default 200 a minute as bench-bot.
            "COUNTERSIGN_BREAKER_FLOOD": "0",
            # 0: the decision itself, not a hold for the undo window (older trees ignore
            # the setting); S: held, and taken into effect by a worker after the round.
            "COUNTERSIGN_UNDO_SECONDS": str(undo),
        }
        if tree != ROOT:  # its own worker package too (queue/ is installed as approval_queue)
            env["PYTHONPATH"] = before_packages(tree)
        flask(tree, env, "db", "upgrade")
        names = [f"reviewer{i}" for i in range(reviewers)]
        for name in names:
            flask(tree, env, "users", "create", name, "--role", "reviewer", stdin=PASSWORD + "\n")
        secret = flask(tree, env, "agents", "create", "bench-bot", "--owner", names[0])
        secret = secret.split()[-1]
        with gunicorn("app:app", env, cwd=tree) as base:
            defer_all(base, secret, items)
            tally = Tally()
            ready = threading.Barrier(len(names) + 1)
            threads = [
                threading.Thread(
                    target=reviewer, args=(base, n, old_flow, tally, ready, bool(undo))
                )
                for n in names
            ]
            for t in threads:
                t.start()
            ready.wait()
            start, cpu = time.perf_counter(), server_cpu_seconds(base)
            backends = DatabaseCpu(url) if kind == "postgres" else None
            if backends is not None:
                backends.watch()
            for t in threads:
                t.join()
            seconds = time.perf_counter() - start
            cpu = server_cpu_seconds(base) - cpu
            db_cpu = None
            if backends is not None:
                db_cpu = backends.used()
                backends.close()
            effect = TakingEffect()
            if undo:  # every window closed, then a real worker takes them into effect
                time.sleep(undo + 0.5)
                effect = take_effect_by_worker(tree, env, url)
                assert effect.taken == tally.decisions, (effect.taken, tally.decisions)
            alone = Tally()
            defer_all(base, secret, 40)
            reviewer(base, names[0], old_flow, alone, held=bool(undo))
        cpu_ms = cpu * 1000 / max(tally.decisions, 1)
        db_ms = None if db_cpu is None else db_cpu * 1000 / max(tally.decisions, 1)
        alone_p50 = statistics.median(alone.latencies_ms)
        return tally.decisions / seconds, tally, alone_p50, cpu_ms, db_ms, effect


def take_effect_by_worker(tree: Path, env: dict[str, str], url: str) -> TakingEffect:
    """`flask worker --burst` in `tree`: its wall and CPU time, and how many deferrals
    are approved afterwards."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    flask(tree, env, "worker", "--burst")
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            taken = conn.execute(
                text("SELECT count(*) FROM deferrals WHERE status = 'approved'")
            ).scalar_one()
    finally:
        engine.dispose()
    return TakingEffect(taken, wall, cpu)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--reviewers", type=int, default=4)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before-tree", type=Path)
    parser.add_argument("--undo-seconds", type=int, default=0, metavar="S")
    args = parser.parse_args()
    trees = {"now": ROOT}
    if args.before_tree:
        trees = {"before": args.before_tree.resolve(), **trees}
    for name, tree in trees.items():
        flow = "POST /batch/<id>/open per card" if opens_cards(tree) else "seen_ms"
        print(f"{name}: {tree} ({flow})", flush=True)
    what = f"held decisions ({args.undo_seconds} s undo)" if args.undo_seconds else "decisions"
    results: dict[str, list[tuple[float, Tally, float, float, float | None]]] = {
        name: [] for name in trees
    }
    for n in range(args.rounds):
        for name, tree in trees.items():
            rate, tally, alone, cpu, db_cpu, effect = run_once(
                tree, args.db, args.reviewers, args.items, args.undo_seconds
            )
            results[name].append((rate, tally, alone, cpu, db_cpu))
            taken = ""
            if args.undo_seconds:
                taken = (
                    f"  worker: {effect.taken} into effect in {effect.wall:.1f} s, "
                    f"CPU {effect.cpu:.1f} s"
                )
            print(
                f"round {n + 1} {name:<6} {rate:7.1f} {what}/s  ({tally.decisions}, "
                f"{tally.requests} requests)  decision p50 {pct(tally.latencies_ms, 50):.1f} ms  "
                f"alone p50 {alone:.1f} ms  server CPU {cpu:.2f} ms/decision  "
                f"{database_cpu(db_cpu)}load {os.getloadavg()[0]:.1f}{taken}",
                flush=True,
            )
    print(f"\n{args.db}, {args.reviewers} reviewers, {args.items} items, median of {args.rounds}:")
    for name, rounds in results.items():
        rounds.sort(key=lambda r: r[0])
        rate, tally, _, _, _ = rounds[len(rounds) // 2]
        alone = statistics.median(r[2] for r in rounds)
        cpu = statistics.median(r[3] for r in rounds)
        db_cpu = None if rounds[0][4] is None else statistics.median(r[4] for r in rounds)
        p50, p99 = pct(tally.latencies_ms, 50), pct(tally.latencies_ms, 99)
        print(
            f"  {name:<6} {rate:7.1f} {what}/s   decision p50 {p50:6.1f} ms  p99 {p99:6.1f} ms"
            f"   one reviewer alone: p50 {alone:.1f} ms   server CPU {cpu:.2f} ms/decision"
            f"{'   ' if db_cpu is not None else ''}{database_cpu(db_cpu).rstrip()}"
        )


def database_cpu(ms: float | None) -> str:
    """PostgreSQL's backends' CPU per decision, for a printed line ("" on SQLite)."""
    return "" if ms is None else f"database CPU {ms:.2f} ms/decision  "


if __name__ == "__main__":
    main()
