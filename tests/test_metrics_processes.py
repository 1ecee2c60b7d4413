"""/metrics when the work is spread over processes (issue 18 item 2): two gunicorn workers
and the rq worker, sharing PROMETHEUS_MULTIPROC_DIR as `serve` and the systemd units set
it up. Whichever worker answers a scrape, the sums are those of every process: intake
counted in both web workers, callbacks counted in the rq worker, a kill counted in a
CLI process, long-polls in flight summed over the live workers."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections import Counter

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from review.signing import sign_headers
from tests.helpers import ROOT, app_environment, free_port, refund, run_flask, wait_for
from tests.metrics_support import parse_metrics, value

pytestmark = pytest.mark.timeout(400)


class Served:
    """gunicorn with two gthread workers, and the rq worker, on one metrics folder."""

    def __init__(self, env: dict[str, str], folder):
        self.env, self.folder = env, folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.logs = (folder / "gunicorn.log").open("ab"), (folder / "worker.log").open("ab")
        self.web = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "review.wsgi:app", "-b", f"127.0.0.1:{self.port}",
             "--config", "python:review.gunicorn_conf",  # its hooks keep the folder tidy
             "--workers", "2", "--threads", "8", "--graceful-timeout", "1"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=self.logs[0],
        )  # fmt: skip
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "app", "worker"],
            cwd=ROOT, env=env, stdout=self.logs[1], stderr=subprocess.STDOUT,
            start_new_session=True,  # rq's scheduler is its child: stopped with it
        )  # fmt: skip
        try:  # on a loaded machine importing the app takes a while
            wait_for(self._ready, timeout=120, interval=0.3, message=lambda: self.said("gunicorn"))
        except BaseException:
            self.close()
            raise

    def _ready(self) -> bool:
        try:
            return httpx.get(self.url + "/livez", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def said(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")[-3000:]

    def scrape(self) -> dict:
        response = httpx.get(self.url + "/metrics", timeout=10)
        assert response.status_code == 200, response.text
        return parse_metrics(response.text)

    def close(self) -> None:
        for proc in (self.web, self.worker):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        try:
            os.killpg(self.worker.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for log in self.logs:
            log.close()


@pytest.fixture
def served(settings_overrides, make_agent, receiver_factory, tmp_path):
    receiver = receiver_factory()
    agent = make_agent(callback_url=receiver.url, allow_private_callbacks=True)
    folder = tmp_path / "metrics"
    env = app_environment(
        settings_overrides,
        COUNTERSIGN_ALLOW_PRIVATE_CALLBACKS="1",
        COUNTERSIGN_AGENT_RATE="0",
        PROMETHEUS_MULTIPROC_DIR=str(folder),
    )
    server = Served(env, tmp_path)
    try:
        yield server, agent, receiver, folder
    finally:
        server.close()


def signed(agent, method: str, url: str, body: bytes = b"") -> httpx.Response:
    headers = sign_headers(agent.secret, f"msg_{uuid.uuid4().hex}", body)
    headers["Content-Type"] = "application/json"
    return httpx.request(method, url, content=body, headers=headers, timeout=30)


def intake_by_process(folder) -> Counter:
    """Deferrals created, per process id, read from each process's own file."""
    per_pid: Counter = Counter()
    for path in glob.glob(str(folder / "histogram_*.db")):
        pid = int(os.path.basename(path).split("_")[-1].removesuffix(".db"))
        for family in MultiProcessCollector.merge([path]):
            for s in family.samples:
                if s.name == "countersign_intake_seconds_count" and s.labels == {
                    "door": "api",
                    "result": "created",
                }:
                    per_pid[pid] += s.value
    return per_pid


def test_metrics_add_up_over_two_gunicorn_workers_and_the_rq_worker(served, settings_overrides):
    server, agent, receiver, folder = served
    create = f"{server.url}/api/v1/agents/{agent.slug}/deferrals"
    ids: list[str] = []
    lock = threading.Lock()

    def defer(i: int) -> None:
        body = json.dumps(refund(summary=f"refund {i}")).encode()
        response = signed(agent, "POST", create, body)
        assert response.status_code == 202, response.text
        with lock:
            ids.append(response.json()["id"])

    # Concurrent requests until both web workers have taken some (each process writes
    # its own file, so the folder tells which pid counted what).
    while len(intake_by_process(folder)) < 2 and len(ids) < 200:
        threads = [threading.Thread(target=defer, args=(len(ids) + i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    per_pid = intake_by_process(folder)
    assert len(per_pid) == 2, per_pid
    created = len(ids)
    assert sum(per_pid.values()) == created

    # Long-polls in flight, in whichever workers took them: summed over the live ones.
    polls = [
        threading.Thread(
            target=signed, args=(agent, "GET", f"{server.url}/api/v1/deferrals/{d}?wait=30")
        )
        for d in ids[:3]
    ]
    for t in polls:
        t.start()
    wait_for(
        lambda: value(server.scrape(), "countersign_long_polls_in_flight") == 3,
        timeout=15,
        message="three long-polls never showed as in flight",
    )
    for d in ids[:3]:  # the agent withdraws them: the long-polls answer at once
        response = signed(
            agent, "POST", f"{server.url}/api/v1/deferrals/{d}/cancel", b'{"reason": "done"}'
        )
        assert response.status_code == 200, response.text
    for t in polls:
        t.join(timeout=15)
    # The rest end by the kill switch, from a CLI process writing into the same folder.
    killed = run_flask(
        "agents", "kill", agent.slug, "--by", "olivia", "--reason", "metrics test",
        env=server.env, timeout=60,
    )  # fmt: skip
    assert killed.returncode == 0, killed.stderr
    callbacks = created + 1  # a decided callback per deferral, and agent.killed
    wait_for(lambda: len(receiver.requests) >= callbacks, timeout=120,
             message=lambda: server.said("worker"))  # fmt: skip

    def settled(samples) -> bool:
        return (
            value(samples, "countersign_callback_attempts_total", result="delivered") >= callbacks
        )

    wait_for(lambda: settled(server.scrape()), timeout=15, message="callbacks never counted")
    for _ in range(6):  # any worker may answer: each answer has every process's sums
        samples = server.scrape()
        assert (
            value(samples, "countersign_intake_seconds_count", door="api", result="created")
            == created
        )
        assert value(samples, "countersign_decisions_total", outcome="cancelled", by="agent") == 3
        assert (
            value(samples, "countersign_decisions_total", outcome="killed", by="system")
            == created - 3
        )
        assert (
            value(samples, "countersign_decision_seconds_count", outcome="killed", by="system")
            == created - 3
        )
        assert value(samples, "countersign_long_polls_in_flight") == 0
        assert (
            value(samples, "countersign_callback_attempts_total", result="delivered") == callbacks
        )
        assert value(samples, "countersign_callback_delivery_seconds_count") == callbacks
        assert (
            sum(v for (name, _), v in samples.items() if name == "countersign_deferrals_pending")
            == 0
        )
        assert value(samples, "countersign_outbox_depth") == 0
        assert value(samples, "countersign_workers_fresh") == 1
        assert value(samples, "countersign_scrape_source_up", source="processes") == 1
    ready = httpx.get(server.url + "/readyz", timeout=5).json()
    assert ready["checks"]["worker"] == "ok"
