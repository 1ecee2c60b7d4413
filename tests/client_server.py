"""A real Countersign for the client's tests (loaded with `pytest_plugins`).

`countersign_server`: `gunicorn app:app` as a subprocess on the test's database and Redis,
callbacks to loopback allowed, no request-rate limit. The web server can be stopped and
started again on the same port while a client waits. `countersign_worker`: the same, with
`flask --app app worker` beside it, for the tests of what the worker does (callbacks).
Nothing else the client meets needs the worker (wake-ups go over Redis, tests decide and
expire in process), and a worker is a second app start-up per test: about a second of CPU.
`DroppingProxy`: a TCP proxy that lets requests through but drops the first answers, as a
network that fails after the service has acted.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import ROOT, app_environment, free_port, wait_for


class CountersignServer:
    """gunicorn (one gthread worker) and, when asked, the rq worker, on one port kept across
    restarts."""

    def __init__(self, env: dict[str, str], log_dir: Path):
        self.env = env
        self.log_dir = log_dir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.web: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self._logs: list = []

    def _log(self, name: str):
        log = (self.log_dir / name).open("ab")
        self._logs.append(log)
        return log

    def start_web(self) -> None:
        log = self._log("gunicorn.log")
        self.web = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "app:app", "-b", f"127.0.0.1:{self.port}",
             "--workers", "1", "--worker-class", "gthread", "--threads", "12",
             "--graceful-timeout", "1"],
            cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
        wait_for(self._healthy, timeout=30, interval=0.1, message=lambda: self.said("gunicorn"))

    def _healthy(self) -> bool:
        try:
            return httpx.get(self.base_url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop_web(self) -> None:
        """SIGTERM, as an operator restarting it: requests in flight are cut after 1 s."""
        if self.web is not None and self.web.poll() is None:
            self.web.terminate()
            try:
                self.web.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.web.kill()
                self.web.wait()

    def refuses_connections(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
        except OSError:
            return True
        return False

    def start_worker(self) -> None:
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "app", "worker"],
            cwd=ROOT, env=self.env, stdout=self._log("worker.log"), stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: rq's scheduler is a child
        )  # fmt: skip

    def stop_worker(self) -> None:
        if self.worker is None:
            return
        if self.worker.poll() is None:
            self.worker.terminate()
            try:
                self.worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait()
        with contextlib.suppress(ProcessLookupError):  # a scheduler left behind
            os.killpg(self.worker.pid, signal.SIGKILL)

    def said(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def close(self) -> None:
        self.stop_web()
        self.stop_worker()
        for log in self._logs:
            log.close()


@pytest.fixture
def countersign_settings() -> dict[str, str]:
    """More environment for the served app (parametrize a test on it to change settings)."""
    return {}


@pytest.fixture
def countersign_server(
    settings_overrides, countersign_settings, tmp_path
) -> Iterator[CountersignServer]:
    """Countersign served on a free port (gunicorn, no worker), on this test's databases."""
    env = app_environment(
        settings_overrides,
        COUNTERSIGN_ALLOW_PRIVATE_CALLBACKS="1",
        COUNTERSIGN_AGENT_RATE="0",
        **countersign_settings,
    )
    server = CountersignServer(env, tmp_path)
    try:
        server.start_web()
        yield server
    finally:
        server.close()


@pytest.fixture
def countersign_worker(countersign_server) -> CountersignServer:
    """countersign_server with its rq worker running too (stopped with the server)."""
    countersign_server.start_worker()
    return countersign_server


class DroppingProxy:
    """A TCP proxy to 127.0.0.1:`port`: requests go through, but the first `drops` answers
    are thrown away and their connections closed as they start to arrive."""

    def __init__(self, port: int, drops: int = 1):
        self.target = port
        self.drops_left = drops
        self.dropped = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._closing = False
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target))
        except OSError:
            self._shut(client)
            return
        with self._lock:
            self._sockets += [client, upstream]
        threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
        try:
            while data := upstream.recv(65536):
                with self._lock:
                    drop = self.drops_left > 0
                    if drop:
                        self.drops_left -= 1
                        self.dropped += 1
                if drop:  # the service has answered: the client never hears it
                    break
                client.sendall(data)
        except OSError:
            pass
        finally:
            self._shut(client)
            self._shut(upstream)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            self._shut(sink)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    def close(self) -> None:
        self._closing = True
        self._listener.close()
        for sock in self._sockets:
            self._shut(sock)


@pytest.fixture
def dropping_proxy() -> Iterator:
    """Factory: DroppingProxy(port, drops), closed after the test."""
    made: list[DroppingProxy] = []

    def make(port: int, drops: int = 1) -> DroppingProxy:
        made.append(DroppingProxy(port, drops))
        return made[-1]

    yield make
    for proxy in made:
        proxy.close()
