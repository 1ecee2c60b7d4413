"""Callbacks survive failures: a Redis that stops while reviewers decide, and a worker
SIGKILLed in the middle of a delivery. Real worker processes, a real receiver, and a
private redis-server on a free port (the shared one is never touched)."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from review.models import OutboxEvent
from review.reviewing.claims import claim_batch
from tests.helpers import AgentClient, Browser, refund, reviewer

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRedis:
    def __init__(self, folder: Path):
        self.port = free_port()
        self.folder = folder
        self.proc = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def stop(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def private_redis(tmp_path):
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    if server.proc.poll() is None:
        server.stop()


class Workers:
    """`flask --app app worker` processes, as an operator runs them."""

    def __init__(self, env, log_dir):
        self.env, self.log_dir, self.procs, self.logs = env, log_dir, [], []

    def start(self):
        log = (self.log_dir / f"worker{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "app", "worker"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: rq's scheduler is a child
        )  # fmt: skip
        self.procs.append(proc)
        self.logs.append(log)
        return proc

    def kill(self, proc):
        """SIGKILL, as a machine or container stopping it: the worker and its scheduler."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def close(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            with contextlib.suppress(ProcessLookupError):  # a scheduler left behind
                os.killpg(proc.pid, signal.SIGKILL)
        for log in self.logs:
            log.close()


@pytest.fixture
def stack(make_app, make_agent, settings_overrides, receiver_factory, tmp_path):
    """An app, an agent whose callbacks go to a local receiver, and worker processes."""
    made = []

    def build(redis_url, *script):
        receiver = receiver_factory(*script)
        app = make_app(redis_url=redis_url, allow_private_callbacks=True, agent_rate=0)
        svc = app.extensions["countersign"]
        base = make_agent(callback_url=receiver.url, allow_private_callbacks=True)
        agent = AgentClient(app.test_client(), base.slug, base.secret)
        env = {
            **os.environ,
            "DATABASE_URL": settings_overrides["database_url"],
            "REDIS_URL": redis_url,
            "COUNTERSIGN_INSTANCE_DIR": settings_overrides["instance_dir"],
            "SECRET_KEY": settings_overrides["secret_key"],
            "COUNTERSIGN_ALLOW_PRIVATE_CALLBACKS": "1",
        }
        workers = Workers(env, tmp_path)
        made.append(workers)
        return app, svc, agent, receiver, workers

    yield build
    for workers in made:
        workers.close()


def events(svc):
    with svc.db.read() as session:
        return session.scalars(select(OutboxEvent)).all()


def wait_for(condition, timeout, what, workers=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    logs = ""
    if workers is not None:
        for log in workers.logs:
            log.flush()
            logs += Path(log.name).read_text(errors="replace")[-3000:]
    raise AssertionError(f"timed out waiting for {what}\n{logs}")


def test_callbacks_decided_while_redis_was_down_all_arrive_once_it_is_back(stack, private_redis):
    app, svc, agent, receiver, workers = stack(private_redis.url)
    ids = [agent.defer(refund(summary=f"refund {i}")).get_json()["id"] for i in range(4)]
    holder = reviewer(svc)
    claim_batch(svc, holder)
    workers.start()
    browser = Browser(app.test_client(), "rita")
    assert browser.post(f"/batch/{ids[0]}/approve").status_code == 302
    wait_for(lambda: len(receiver.requests) == 1, 20, "the first callback")

    private_redis.stop()
    for d_id in ids[1:]:  # reviewers keep deciding: no error, and each decision is kept
        response = browser.post(f"/batch/{d_id}/reject", {"reason": "Against policy"})
        assert response.status_code == 302
    assert all(e.status == "pending" for e in events(svc) if e.deferral_id != ids[0])
    time.sleep(2)  # the worker, meanwhile, has lost Redis
    private_redis.start()

    wait_for(lambda: all(e.status == "delivered" for e in events(svc)) and len(events(svc)) == 4,
             40, "every callback", workers)  # fmt: skip
    got = {}
    for headers, body, _path in receiver.requests:
        got.setdefault(headers["webhook-id"], []).append(body)
    assert set(got) == {e.id for e in events(svc)}


def test_a_worker_killed_mid_delivery_sends_it_again_with_the_same_id(stack, redis_url):
    app, svc, agent, receiver, workers = stack(redis_url, (200, {}, 4), (200, {}, 0))
    d_id = agent.defer().get_json()["id"]
    holder = reviewer(svc)
    claim_batch(svc, holder)
    first = workers.start()
    Browser(app.test_client(), "rita").post(f"/batch/{d_id}/approve")
    wait_for(lambda: len(receiver.requests) == 1, 20, "the first attempt to reach the receiver")
    workers.kill(first)  # mid-delivery: the receiver is still answering
    assert events(svc)[0].status == "pending" and events(svc)[0].attempts == 0
    workers.start()
    wait_for(lambda: events(svc)[0].status == "delivered", 60, "the callback to be delivered")
    ids = [headers["webhook-id"] for headers, _b, _p in receiver.requests]
    assert len(ids) >= 2 and set(ids) == {events(svc)[0].id}


def test_a_worker_that_loses_redis_in_the_middle_of_a_job_keeps_working(stack, private_redis):
    app, svc, agent, receiver, workers = stack(private_redis.url, (200, {}, 3), (200, {}, 0))
    first, second = (agent.defer(refund(summary=s)).get_json()["id"] for s in ("one", "two"))
    holder = reviewer(svc)
    claim_batch(svc, holder)
    worker = workers.start()
    browser = Browser(app.test_client(), "rita")
    browser.post(f"/batch/{first}/approve")
    wait_for(lambda: len(receiver.requests) == 1, 20, "the first attempt", workers)
    private_redis.stop()  # while the job is running: its bookkeeping will fail
    wait_for(lambda: events(svc)[0].status == "delivered", 20, "the first to be recorded", workers)
    time.sleep(1)
    private_redis.start()
    browser.post(f"/batch/{second}/approve")
    wait_for(
        lambda: len(events(svc)) == 2 and all(e.status == "delivered" for e in events(svc)),
        40,
        "the second callback, from the same worker process",
        workers,
    )
    assert worker.poll() is None  # still running
