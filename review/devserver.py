"""`countersign serve` (`flask --app app serve`): all of Countersign on one machine, for `make run`.

Migrates the database, prepares the demo when COUNTERSIGN_DEMO=1, starts the embedded
Redis (when REDIS_URL is unset), then runs gunicorn and the rq worker as child
processes until interrupted; with the demo, also the demo agent's callback receiver
(review/demo_receiver.py) on a loopback port, set as the demo agent's callback URL. The
banner, with its "ready" line, comes once /healthz (and the receiver) answer, not
before. On the way out it stops the children and the embedded Redis, so nothing is left
running.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import click

from review import migrate
from review.bundled import INSTALLED, SOURCE_ROOT
from review.demo import DEMO_ADMIN, demo_admin_password, ensure_demo, point_demo_callbacks
from review.observability import MULTIPROC_ENV
from review.observability.multiprocess import fresh_folder
from review.services import Services

READY_TIMEOUT = 120  # seconds for /healthz to answer before giving up


def run_all(svc: Services, *, host: str, port: int, workers: int) -> None:
    migrate.upgrade(svc.db)
    receiver_port, receiver_note = None, ""
    if svc.settings.demo:
        ensure_demo(svc)
        receiver_port, receiver_note = _demo_receiver(svc, port)
    env = dict(os.environ)
    env["REDIS_URL"] = svc.redis.url  # children share the server this process owns
    env["COUNTERSIGN_INSTANCE_DIR"] = svc.settings.instance_dir
    env["DATABASE_URL"] = svc.settings.database_url
    if not INSTALLED:  # the children import this checkout's `review`, wherever they start
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SOURCE_ROOT), env.get("PYTHONPATH")]))
    # One folder of metric files for gunicorn's workers and the rq worker, emptied of an
    # earlier run's (docs/METRICS.md): /metrics adds up every process's values.
    env[MULTIPROC_ENV] = fresh_folder(
        os.environ.get(MULTIPROC_ENV) or os.path.join(svc.settings.instance_dir, "metrics")
    )
    python = sys.executable
    web = [
        python, "-m", "gunicorn", "review.wsgi:app",
        "--config", "python:review.gunicorn_conf",  # deploy/countersign-web.service's settings
        "--bind", f"{host}:{port}",
        "--workers", str(workers),
    ]  # fmt: skip
    worker = [python, "-m", "review", "worker"]
    local = _loopback(host)
    checks = [f"http://{local}:{port}/healthz"]
    children = [subprocess.Popen(web, env=env), subprocess.Popen(worker, env=env)]
    if receiver_port is not None:
        receiver = [
            python, "-m", "review.demo_receiver", "--port", str(receiver_port),
            "--service", f"http://{local}:{port}",
            "--secret-file", str(svc.settings.instance_path / "demo-agent.secret"),
        ]  # fmt: skip
        children.append(subprocess.Popen(receiver, env=env))
        checks.append(f"http://127.0.0.1:{receiver_port}/healthz")
    click.echo(f"countersign: starting on http://{host}:{port}/ ...")
    stopping = False

    def stop(_signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        started = time.monotonic()
        if _wait_ready(checks, children, lambda: stopping):
            _banner(svc, host, port, receiver_port, receiver_note, time.monotonic() - started)
        elif not stopping:
            click.echo(f"countersign: not ready after {READY_TIMEOUT} s; stopping", err=True)
            stopping = True
        while not stopping and all(child.poll() is None for child in children):
            time.sleep(0.2)
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
        svc.close()
        click.echo("countersign stopped")


def _loopback(host: str) -> str:
    """Where this machine reaches the web server bound to `host`."""
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host  # noqa: S104


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 (http, ours)
            return answer.status == 200
    except (OSError, urllib.error.URLError):
        return False


def _wait_ready(urls: list[str], children: list, stopping) -> bool:
    """True once every URL answers 200; False if a child dies, a stop comes or time runs out."""
    deadline = time.monotonic() + READY_TIMEOUT
    waiting = list(urls)
    while waiting and time.monotonic() < deadline:
        if stopping() or any(child.poll() is not None for child in children):
            return False
        waiting = [url for url in waiting if not _answers(url)]
        if waiting:
            time.sleep(0.2)
    return not waiting


def _free_port(preferred: int) -> int:
    """`preferred` when nothing listens there on loopback, else any free port."""
    for candidate in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return s.getsockname()[1]
    raise OSError("no free port on 127.0.0.1")


def _demo_receiver(svc: Services, port: int) -> tuple[int | None, str]:
    """The demo receiver's port (its URL set as the demo agent's callback URL), or None
    and why it does not run."""
    if importlib.util.find_spec("countersign_client") is None:
        return None, "off: install the client (pip install ./clients/python) to see callbacks"
    if not svc.settings.allow_private_callbacks:
        return None, "off: COUNTERSIGN_ALLOW_PRIVATE_CALLBACKS=1 lets callbacks reach it"
    receiver_port = _free_port(port + 1)
    url = f"http://127.0.0.1:{receiver_port}/callbacks"
    point_demo_callbacks(svc, url)
    return receiver_port, url


def _banner(
    svc: Services,
    host: str,
    port: int,
    receiver_port: int | None,
    receiver_note: str,
    took: float,
) -> None:
    lines = [
        "",
        f"  Countersign is running on http://{host}:{port}/",
        f"  database: {svc.db.engine.dialect.name}   redis: "
        + ("embedded (instance/redis.sock)" if svc.redis.embedded else "REDIS_URL"),
        f"  health:   http://{host}:{port}/healthz   metrics: http://{host}:{port}/metrics",
    ]
    password = demo_admin_password(svc) if svc.settings.demo else None
    if password:
        lines.append(f"  log in:   {DEMO_ADMIN} / {password}   (demo admin; kept in instance/)")
    if svc.settings.demo:
        lines.append("  demo:     the agent 'demo-ops-bot' is posting sample deferrals")
        if receiver_port is not None:
            lines.append(
                f"  receiver: {receiver_note} (its side: http://127.0.0.1:{receiver_port}/)"
            )
        else:
            lines.append(f"  receiver: {receiver_note}")
    lines.append("  stop:     Ctrl-C")
    lines.append(f"  ready:    /healthz answered after {took:.1f} s")
    click.echo("\n".join(lines) + "\n")
