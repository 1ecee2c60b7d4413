"""Callback delivery: decision-to-callback latency, and callbacks per second per worker.

    .venv/bin/python bench/delivery.py [--db sqlite|postgres|both] [--callbacks 2000]
                                       [--samples 200]

Per database: a fresh database, one agent whose callback URL is a local receiver
(HTTP/1.1 keep-alive, answers 200 at once), and one `flask --app app worker` process.

1. Baseline: this process POSTs the same signed bodies to the receiver from one thread,
   one after another: HTTP alone, the most one process could send.
2. Throughput: --callbacks deferrals are created and cancelled (each cancellation
   writes its callback to the outbox and queues it) while no worker runs; then one
   worker starts and drains them. Callbacks/s counts from its first callback to its last.
3. Latency: with the worker idle, --samples deferrals are cancelled one at a time, ten
   per second; for each, the time from the commit to the receiver holding the callback.

Targets (issue 5): p50 under 100 ms, at least 300 callbacks/s per worker process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REDIS, ROOT, database, flask_cmd  # noqa: E402
from review.signing import sign_headers  # noqa: E402

BODY = {
    "action": {"tool": "billing.refund", "args": {"invoice": "INV-1", "amount": 740}},
    "summary": "Refund $740 to customer C-88319",
    "on_behalf_of": {"id": "alice@example.com", "display_name": "Alice"},
    "before": {"invoice": "INV-1", "status": "paid"},
    "after": {"invoice": "INV-1", "status": "refunded"},
}


class Receiver:
    """Answers 200 at once and notes when each deferral's callback arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.count = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver would offer

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                at = time.monotonic()
                data = json.loads(body).get("data") or {}
                with receiver.lock:
                    receiver.count += 1
                    receiver.arrived.setdefault(data.get("id", ""), at)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def baseline(receiver: Receiver, secret: str, n: int) -> float:
    body = json.dumps({"type": "deferral.decided", "data": {"id": "baseline", **BODY}})
    with httpx.Client(timeout=15) as client:
        started = time.perf_counter()
        for _ in range(n):
            headers = sign_headers(secret, f"evt_{uuid.uuid4().hex}", body)
            headers["Content-Type"] = "application/json"
            client.post(receiver.url, content=body, headers=headers)
        return n / (time.perf_counter() - started)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def bench(kind: str, n: int, samples: int) -> dict[str, float]:
    receiver = Receiver()
    redis.Redis.from_url(REDIS).flushdb()
    with database(kind) as url, tempfile.TemporaryDirectory(prefix="cs-bench-") as instance:
        env = {
            "DATABASE_URL": url,
            "REDIS_URL": REDIS,
            "COUNTERSIGN_INSTANCE_DIR": instance,
            "COUNTERSIGN_ALLOW_PRIVATE_CALLBACKS": "1",
            "COUNTERSIGN_AGENT_RATE": "0",
            "COUNTERSIGN_AGENT_MAX_PENDING": "0",
        }
        flask_cmd(env, "db", "upgrade")
        flask_cmd(env, "users", "create", "owner", "--role", "admin", stdin="bench-password\n")
        secret = flask_cmd(
            env, "agents", "create", "bench-bot", "--owner", "owner", "--callback-url", receiver.url
        ).split()[-1]
        os.environ.update(env)
        from review.app_factory import create_app  # noqa: PLC0415 (settings come from the environment above)
        from review.intake import deferrals, preparation
        from review.reviewing.ending import cancel_deferral

        app = create_app()
        svc = app.extensions["countersign"]
        with svc.db.read() as session:
            signer = svc.secrets.signer(session, "bench-bot")

        def decide_one() -> tuple[str, float]:
            prepared = preparation.prepare(svc, json.loads(json.dumps(BODY)))
            made = deferrals.create_deferral(svc, signer, f"msg_{uuid.uuid4().hex}", prepared)
            cancel_deferral(svc, made.deferral.id, signer, "bench")
            return made.deferral.id, time.monotonic()

        base_rate = baseline(receiver, secret, n)

        for _ in range(n):  # the backlog, while no worker runs
            decide_one()
        before = receiver.count
        log = open(Path(instance) / "worker.log", "wb")  # noqa: SIM115
        worker = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "app", "worker"],
            cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 600
            while receiver.count - before < n and time.monotonic() < deadline:
                time.sleep(0.05)
            times = sorted(receiver.arrived.values())[-n:]
            rate = (n - 1) / (times[-1] - times[0]) if n > 1 else 0.0

            latencies = []
            for _ in range(samples):
                deferral_id, committed = decide_one()
                wait_until = time.monotonic() + 30
                while deferral_id not in receiver.arrived and time.monotonic() < wait_until:
                    time.sleep(0.001)
                latencies.append((receiver.arrived[deferral_id] - committed) * 1000)
                time.sleep(0.1)
        finally:
            worker.terminate()
            worker.wait(20)
            log.close()
            svc.close()
            receiver.close()
    return {
        "baseline": base_rate,
        "rate": rate,
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--callbacks", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    print(f"{args.callbacks} callbacks, {args.samples} latency samples, {os.cpu_count()} CPUs")
    for kind in kinds:
        r = bench(kind, args.callbacks, args.samples)
        ok = r["p50"] < 100 and r["rate"] >= 300
        ratio = r["rate"] / r["baseline"]
        print(
            f"{kind:<9} one worker {r['rate']:7.1f} callbacks/s"
            f"  (bare HTTP from one thread {r['baseline']:7.1f}/s, ratio {ratio:.2f})"
            f"   decision->callback p50 {r['p50']:6.1f} ms  p99 {r['p99']:6.1f} ms"
            f"   {'ok' if ok else 'MISSES TARGET'} (p50 < 100 ms, >= 300/s)"
        )


if __name__ == "__main__":
    main()
