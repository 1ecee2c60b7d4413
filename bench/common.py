"""Shared pieces of the benchmarks: throwaway databases, servers, a load driver, statistics."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://127.0.0.1:5432/test")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


@contextlib.contextmanager
def database(kind: str) -> Iterator[str]:
    """A fresh, empty database of `kind` ("sqlite" or "postgres"), dropped afterwards."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="cs-bench-") as folder:
            yield f"sqlite:///{Path(folder) / 'bench.db'}"
        return
    name = f"cs_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SHIPPED_CONFIG = "python:review.gunicorn_conf"


def add_server_options(parser: argparse.ArgumentParser) -> None:
    """`--shipped-config`: serve both apps under review/gunicorn_conf.py (see `gunicorn`)."""
    parser.add_argument(
        "--shipped-config",
        action="store_true",
        help="both servers under review/gunicorn_conf.py: its threads (32) and access log",
    )


def use_server_options(args: argparse.Namespace) -> None:
    if args.shipped_config:
        os.environ["BENCH_GUNICORN_CONF"] = SHIPPED_CONFIG


def server_settings() -> str:
    """What the servers run with, for a bench's first line."""
    workers = os.environ.get("BENCH_WORKERS", "2")
    conf = os.environ.get("BENCH_GUNICORN_CONF")
    threads = os.environ.get("BENCH_THREADS", None if conf else "4")
    if conf:
        return f"gunicorn {workers} gthread worker(s) x {threads or 'its'} threads, --config {conf}"
    return f"gunicorn {workers} gthread worker(s) x {threads} threads"


def _config_env(conf: str | None) -> dict[str, str]:
    """What a server under a config file needs besides its own environment: review.* on
    the path (the bare app runs from bench/) and an instance folder of its own for the
    shipped file's control socket (Countersign's own environment names its own)."""
    if not conf:
        return {}
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {"PYTHONPATH": path, "COUNTERSIGN_INSTANCE_DIR": tempfile.mkdtemp(prefix="cs-conf-")}


SERVERS: dict[str, int] = {}  # base URL -> pid of the gunicorn arbiter serving it


def server_cpu_seconds(base: str) -> float:
    """CPU time (user + system) used so far by the gunicorn at `base`, its arbiter and its
    workers (Linux /proc): a server's own cost, which the load driver's share and the
    machine's other work do not add to, as a request rate's wall clock does."""
    pids = [SERVERS[base]]
    for task in Path(f"/proc/{pids[0]}/task").iterdir():
        pids += [int(p) for p in (task / "children").read_text().split()]
    total = 0
    for pid in pids:
        try:  # after the name in parentheses: state is field 3, utime 14, stime 15
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # a worker that has just exited
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def gunicorn(app: str, env: dict[str, str], *, cwd: Path = ROOT) -> Iterator[str]:
    """Serve `app` with gunicorn (gthread) on a free port until the block ends.

    BENCH_WORKERS (2) and BENCH_THREADS (4) set the workers and threads of both servers.
    With BENCH_GUNICORN_CONF (`--shipped-config` sets it to review/gunicorn_conf.py) both
    run under that file: its threads unless BENCH_THREADS is given, its access log (to
    /dev/null here, written all the same), its worker class; the workers still
    BENCH_WORKERS's, so the two CPUs are shared as in the bench's own settings.
    """
    workers = int(os.environ.get("BENCH_WORKERS", 2))
    conf = os.environ.get("BENCH_GUNICORN_CONF")
    threads = os.environ.get("BENCH_THREADS", None if conf else "4")
    port = free_port()
    extra = _config_env(conf)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            app,
            "--bind",
            f"127.0.0.1:{port}",
            *(["--config", conf] if conf else ["--worker-class", "gthread"]),
            *([] if conf else ["--log-level", "warning"]),
            "--workers",
            str(workers),
            *(["--threads", threads] if threads else []),
        ],
        cwd=cwd,
        env={**os.environ, **extra, **env},
        stdout=subprocess.DEVNULL if conf else None,  # the access log
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    SERVERS[base] = proc.pid
    try:
        # BENCH_START_SECONDS: a machine under load may take longer than a minute to boot it.
        deadline = time.monotonic() + float(os.environ.get("BENCH_START_SECONDS", 60))
        while time.monotonic() < deadline:
            try:
                httpx.get(base + "/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"{app} did not start")
        yield base
    finally:
        SERVERS.pop(base, None)
        proc.terminate()
        proc.wait(20)
        if "COUNTERSIGN_INSTANCE_DIR" in extra:
            shutil.rmtree(extra["COUNTERSIGN_INSTANCE_DIR"], ignore_errors=True)


def flask_cmd(env: dict[str, str], *args: str, stdin: str = "") -> str:
    """Run `flask --app app ARGS` with `env` added; its stdout."""
    out = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


@dataclass
class Result:
    name: str
    requests: int
    seconds: float
    latencies_ms: list[float]
    statuses: dict[int, int]
    database_cpu_us: float | None = None  # PostgreSQL backends' CPU per request, if measured

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]

    def line(self) -> str:
        backends = (
            "" if self.database_cpu_us is None else f"   db CPU {self.database_cpu_us:5.0f} us/req"
        )
        return (
            f"{self.name:<34} {self.throughput:8.1f} req/s   p50 {self.percentile(50):6.1f} ms"
            f"   p99 {self.percentile(99):6.1f} ms{backends}   statuses {dict(self.statuses)}"
        )


def drive(
    name: str,
    base: str,
    requests: list[tuple[str, bytes, dict[str, str]]],
    concurrency: int,
    method: str = "POST",
) -> Result:
    """Send prepared (path, body, headers) requests from `concurrency` keep-alive clients."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    chunks = [requests[i::concurrency] for i in range(concurrency)]

    def run(chunk: list[tuple[str, bytes, dict[str, str]]]) -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            for path, body, headers in chunk:
                start = time.perf_counter()
                try:
                    status = client.request(
                        method, path, content=body or None, headers=headers
                    ).status_code
                except httpx.HTTPError:
                    status = 0  # counted, so a failing server shows instead of vanishing
                elapsed = (time.perf_counter() - start) * 1000
                with lock:
                    latencies.append(elapsed)
                    statuses[status] = statuses.get(status, 0) + 1

    threads = [threading.Thread(target=run, args=(c,)) for c in chunks]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return Result(name, len(requests), time.perf_counter() - start, latencies, statuses)


def median_of(runs: int, fn: Callable[[], Result]) -> Result:
    results = [fn() for _ in range(runs)]
    results.sort(key=lambda r: r.throughput)
    return results[len(results) // 2]


def mean(values: list[float]) -> float:
    return statistics.fmean(values)
