"""The demo shows the whole loop (issue 15): `make run`'s stack, a reviewer's approval, the
demo agent's receiver verifying the callback, running the action in make-believe and
reporting the execution, which the resource and the agent's page then show.

The stack runs as `make run` starts it (`COUNTERSIGN_DEMO=1
COUNTERSIGN_ALLOW_PRIVATE_CALLBACKS=1 flask --app app serve`, embedded Redis) in a
subprocess on free ports; the reviewer is an HTTP client with a cookie session.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading

import httpx
import pytest
from countersign_client import Countersign

from review.db import Database
from review.demo import DEMO_AGENT
from review.models import Agent
from tests.helpers import ROOT, app_environment, csrf_token, free_port, wait_for


class Output:
    """The server's output, line by line as it comes, with what /healthz said at the
    moment the "ready" line arrived."""

    def __init__(self, process: subprocess.Popen, health_url: str):
        self.lines: list[str] = []
        self.health_at_ready: int | None = None
        self.health_url = health_url
        self.thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self.thread.start()

    def _read(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.strip().startswith("ready:") and self.health_at_ready is None:
                try:
                    self.health_at_ready = httpx.get(self.health_url, timeout=5).status_code
                except httpx.HTTPError:
                    self.health_at_ready = 0

    def text(self) -> str:
        return "\n".join(self.lines)

    def find(self, pattern: str) -> re.Match | None:
        return re.search(pattern, self.text())


@pytest.fixture
def demo_stack(settings_overrides, instance_dir):
    port = free_port()
    env = app_environment(
        settings_overrides, COUNTERSIGN_DEMO="1", COUNTERSIGN_ALLOW_PRIVATE_CALLBACKS="1"
    )
    env.pop("REDIS_URL")  # as `make run`: the embedded Redis
    server = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "app", "serve", "--port", str(port),
         "--workers", "1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    output = Output(server, f"{base}/healthz")
    try:
        yield base, output, instance_dir, server
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
        output.thread.join(timeout=10)
        server.stdout.close()


def _log_in(base: str, password: str) -> tuple[httpx.Client, str]:
    browser = httpx.Client(base_url=base, timeout=30)
    login = browser.get("/login")
    answer = browser.post(
        "/login",
        data={"username": "admin", "password": password, "csrf_token": csrf_token(login.text)},
    )
    assert answer.status_code == 302, answer.text
    return browser, csrf_token(browser.get("/queue").text)


@pytest.mark.timeout(240)
def test_make_run_shows_a_decision_travel_back_and_its_execution_come_in(demo_stack, database_url):
    base, output, instance, server = demo_stack
    wait_for(lambda: output.health_at_ready is not None, timeout=150, message=output.text)
    assert output.health_at_ready == 200, output.text()  # "ready" only once /healthz answers
    assert output.text().index("starting on") < output.text().index("ready:")
    receiver = output.find(r"receiver: (http://127\.0\.0\.1:(\d+)/callbacks)")
    assert receiver, output.text()
    db = Database(database_url)
    try:
        with db.read() as session:
            demo = session.query(Agent).filter_by(slug=DEMO_AGENT).one()
            assert demo.callback_url == receiver.group(1)
    finally:
        db.dispose()
    receiver_home = f"http://127.0.0.1:{receiver.group(2)}/"

    password = (instance / "demo-admin-password").read_text().strip()
    browser, token = _log_in(base, password)
    held: list[str] = []

    def a_batch() -> bool:  # the worker posts the demo's first samples as it starts
        browser.post("/batch/start", data={"csrf_token": token})
        held[:] = re.findall(r'data-id="(dfr_[0-9A-Z]+)"', browser.get("/batch").text)
        return bool(held)

    wait_for(a_batch, timeout=60, interval=0.5, message="no demo deferral came")
    for deferral_id in dict.fromkeys(held):
        browser.post(f"/batch/{deferral_id}/approve", data={"csrf_token": token})

    agent = Countersign(base, DEMO_AGENT, (instance / "demo-agent.secret").read_text().strip())
    executed = []

    def one_executed() -> bool:
        for deferral_id in dict.fromkeys(held):
            d = agent.get(deferral_id)
            if d.execution is not None:
                executed.append(d)
                return True
        return False

    # The undo window (5 s), the callback, the receiver's GET and its report.
    wait_for(one_executed, timeout=90, interval=0.5, message=output.text)
    (d,) = executed
    assert d.status == "approved" and d.execution["outcome"] == "succeeded"
    assert d.execution["result"]["make_believe"] is True
    page = browser.get(f"/agents/{DEMO_AGENT}").text
    assert "executed: succeeded" in page
    said = httpx.get(receiver_home, timeout=5).json()
    assert any(r["deferral"] == d.id and "reported" in r["what"] for r in said["recent"])
    browser.close()
    agent.close()
    server.send_signal(signal.SIGINT)  # Ctrl-C stops the receiver with the rest
    server.wait(timeout=60)
    output.thread.join(timeout=10)
    assert "countersign stopped" in output.text()
    with pytest.raises(httpx.ConnectError):
        httpx.get(receiver_home, timeout=5)
