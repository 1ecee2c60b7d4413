"""Callbacks survive failures: a Redis that stops while reviewers decide, and a worker
SIGKILLed in the middle of a delivery. Real worker processes, a real receiver, and a
private redis-server on a free port (the shared one is never touched)."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from review.models import OutboxEvent
from review.reviewing.claims import claim_batch
from tests.helpers import (
    ROOT,
    app_environment,
    free_port,
    logged_in,
    refund,
    reviewer,
    wait_for,
)

# What a worker logs when Redis goes away: rq, waiting for a job, retries the connection;
# ours, when the loss ended rq's loop elsewhere (a job's bookkeeping), starts a fresh one.
WAITING_WORKER_LOST_REDIS = "could not connect to Redis instance"
WORKER_LOOP_ENDED = "worker loop ended without a stop request"


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
        wait_for(self.answers, timeout=10, message=f"redis-server to listen on {self.port}")

    def answers(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
        except OSError:
            return False
        return True

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

    def said_so_far(self, tail: int = 3000) -> str:
        """The end of what each worker has logged (all of it with tail=0)."""
        said = ""
        for log in self.logs:
            log.flush()
            said += Path(log.name).read_text(errors="replace")[-tail:]
        return said

    def have_logged(self, line: str) -> bool:
        return line in self.said_so_far(tail=0)


@pytest.fixture
def make_workers(settings_overrides, tmp_path):
    """Factory: the `flask worker` processes of an app on `redis_url`, stopped afterwards."""
    made = []

    def build(redis_url) -> Workers:
        env = app_environment(
            settings_overrides, REDIS_URL=redis_url, COUNTERSIGN_ALLOW_PRIVATE_CALLBACKS="1"
        )
        workers = Workers(env, tmp_path)
        made.append(workers)
        return workers

    yield build
    for workers in made:
        workers.close()


def events(svc):
    with svc.db.read() as session:
        return session.scalars(select(OutboxEvent)).all()


def wait_with_logs(condition, timeout, what, workers):
    """wait_for, with the workers' logs in the message when it times out."""
    wait_for(
        condition,
        timeout=timeout,
        interval=0.2,
        message=lambda: f"waiting for {what}\n{workers.said_so_far()}",
    )


def test_callbacks_decided_while_redis_was_down_all_arrive_once_it_is_back(
    callback_world, make_workers, private_redis
):
    world = callback_world(redis_url=private_redis.url)
    workers = make_workers(private_redis.url)
    ids = [world.agent.defer(refund(summary=f"refund {i}")).get_json()["id"] for i in range(4)]
    claim_batch(world.svc, reviewer(world.svc))
    workers.start()
    browser = logged_in(world.app, "rita")
    assert browser.post(f"/batch/{ids[0]}/approve").status_code == 302
    wait_with_logs(lambda: len(world.receiver.requests) == 1, 20, "the first callback", workers)

    private_redis.stop()
    for d_id in ids[1:]:  # reviewers keep deciding: no error, and each decision is kept
        response = browser.post(f"/batch/{d_id}/reject", {"reason": "Against policy"})
        assert response.status_code == 302
    assert all(e.status == "pending" for e in events(world.svc) if e.deferral_id != ids[0])
    wait_with_logs(
        lambda: workers.have_logged(WAITING_WORKER_LOST_REDIS),
        20,
        "the worker to find Redis gone",
        workers,
    )
    private_redis.start()

    wait_with_logs(
        lambda: (
            all(e.status == "delivered" for e in events(world.svc)) and len(events(world.svc)) == 4
        ),
        40,
        "every callback",
        workers,
    )
    got = {}
    for headers, body, _path in world.receiver.requests:
        got.setdefault(headers["webhook-id"], []).append(body)
    assert set(got) == {e.id for e in events(world.svc)}


def test_a_worker_killed_mid_delivery_sends_it_again_with_the_same_id(
    callback_world, make_workers, redis_url
):
    world = callback_world((200, {}, 4), (200, {}, 0), redis_url=redis_url)
    workers = make_workers(redis_url)
    d_id = world.agent.defer().get_json()["id"]
    claim_batch(world.svc, reviewer(world.svc))
    first = workers.start()
    logged_in(world.app, "rita").post(f"/batch/{d_id}/approve")
    wait_with_logs(
        lambda: len(world.receiver.requests) == 1,
        20,
        "the first attempt to reach the receiver",
        workers,
    )
    workers.kill(first)  # mid-delivery: the receiver is still answering
    assert events(world.svc)[0].status == "pending" and events(world.svc)[0].attempts == 0
    workers.start()
    wait_with_logs(
        lambda: events(world.svc)[0].status == "delivered",
        60,
        "the callback to be delivered",
        workers,
    )
    ids = [headers["webhook-id"] for headers, _b, _p in world.receiver.requests]
    assert len(ids) >= 2 and set(ids) == {events(world.svc)[0].id}


class _MidJobOutage:
    """Two approved-to-be deferrals; the first's callback is being answered (slowly) by
    the receiver when Redis goes down under the worker."""

    def __init__(self, callback_world, make_workers, private_redis):
        self.world = callback_world((200, {}, 3), (200, {}, 0), redis_url=private_redis.url)
        self.workers = make_workers(private_redis.url)
        agent, svc = self.world.agent, self.world.svc
        first, self.second = (agent.defer(refund(summary=s)).get_json()["id"] for s in "ab")
        claim_batch(svc, reviewer(svc))
        self.worker = self.workers.start()
        self.browser = logged_in(self.world.app, "rita")
        self.browser.post(f"/batch/{first}/approve")
        receiver = self.world.receiver
        wait_with_logs(lambda: len(receiver.requests) == 1, 20, "the first attempt", self.workers)
        private_redis.stop()  # while the job is running: its bookkeeping will fail

    def approve_the_second_and_see_both_delivered(self, what: str) -> None:
        self.browser.post(f"/batch/{self.second}/approve")
        svc = self.world.svc
        wait_with_logs(
            lambda: len(events(svc)) == 2 and all(e.status == "delivered" for e in events(svc)),
            40,
            what,
            self.workers,
        )


def test_a_worker_that_loses_redis_in_the_middle_of_a_job_keeps_working(
    callback_world, make_workers, private_redis
):
    outage = _MidJobOutage(callback_world, make_workers, private_redis)
    svc, workers = outage.world.svc, outage.workers
    wait_with_logs(
        lambda: events(svc)[0].status == "delivered", 20, "the first to be recorded", workers
    )
    # The job's bookkeeping failed and ended rq's loop; ours starts a fresh one in 2 s.
    wait_with_logs(
        lambda: workers.have_logged(WORKER_LOOP_ENDED), 20, "the worker to find Redis gone", workers
    )
    private_redis.start()
    outage.approve_the_second_and_see_both_delivered(
        "the second callback, from the same worker process"
    )
    assert outage.worker.poll() is None  # still running


def test_a_worker_outlives_a_redis_outage_longer_than_its_restart_delay(
    callback_world, make_workers, private_redis
):
    outage = _MidJobOutage(callback_world, make_workers, private_redis)
    wait_with_logs(
        lambda: outage.workers.have_logged("Redis still unavailable"),
        30,
        "the worker to try again while Redis is still down",
        outage.workers,
    )
    assert outage.worker.poll() is None  # a rebuild that met a dead Redis did not end the process
    private_redis.start()
    outage.approve_the_second_and_see_both_delivered("both callbacks, from the same worker process")
    assert outage.worker.poll() is None
