"""`countersign serve` (`flask --app app serve`): all of Countersign on one machine, for `make run`.

Migrates the database, prepares the demo when COUNTERSIGN_DEMO=1, starts the embedded
Redis (when REDIS_URL is unset), then runs gunicorn and the rq worker as child
processes until interrupted. On the way out it stops the children and the embedded
Redis, so nothing is left running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import click

from review import migrate
from review.bundled import INSTALLED, SOURCE_ROOT
from review.demo import DEMO_ADMIN, demo_admin_password, ensure_demo
from review.observability import MULTIPROC_ENV
from review.observability.multiprocess import fresh_folder
from review.services import Services


def run_all(svc: Services, *, host: str, port: int, workers: int) -> None:
    migrate.upgrade(svc.db)
    if svc.settings.demo:
        ensure_demo(svc)
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
    children = [subprocess.Popen(web, env=env), subprocess.Popen(worker, env=env)]
    _banner(svc, host, port)
    stopping = False

    def stop(_signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
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


def _banner(svc: Services, host: str, port: int) -> None:
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
    lines.append("  stop:     Ctrl-C")
    click.echo("\n".join(lines) + "\n")
