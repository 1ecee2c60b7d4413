"""Long-polls: agents that cannot receive callbacks wait for their deferral to end.

`GET /api/v1/deferrals/{id}?wait=N` holds the request, never a database connection:
one listener thread per process subscribes to the channel that wake-ups publish on
(review/callbacks/wakeups.py) and wakes the requests waiting for each id.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import redis

from review import redis_keys
from review.models import TERMINAL_STATUSES, Deferral
from review.resources import deferral_resource

if TYPE_CHECKING:
    from review.services import Services

log = logging.getLogger(__name__)


class Waiters:
    """Long-polls waiting in this process for deferrals to end.

    One listener thread per process subscribes to the ended channel and sets the events of the
    requests waiting for each id, so a thousand waiting requests hold one Redis
    connection and no database connection at all.
    """

    def __init__(self, client_for: Any):
        self._client_for = client_for
        self._lock = threading.Lock()
        self._waiting: dict[str, set[threading.Event]] = {}
        self._thread: threading.Thread | None = None
        self._pid = 0
        self.listening = threading.Event()  # set while subscribed
        self._stop = threading.Event()

    @contextmanager
    def watch(self, deferral_id: str) -> Iterator[threading.Event]:
        """An event set when `deferral_id` ends; register before reading its status."""
        self._ensure_listener()
        woken = threading.Event()
        with self._lock:
            self._waiting.setdefault(deferral_id, set()).add(woken)
        try:
            yield woken
        finally:
            with self._lock:
                group = self._waiting.get(deferral_id)
                if group is not None:
                    group.discard(woken)
                    if not group:
                        del self._waiting[deferral_id]

    def _ensure_listener(self) -> None:
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self._listen, name="countersign-waiters", daemon=True
                )
                self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = self._client_for().pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(redis_keys.ENDED_CHANNEL)
                self.listening.set()
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message and message["type"] == "message":
                        self._wake(message["data"].decode())
            except (redis.RedisError, OSError) as exc:
                if self.listening.is_set():
                    log.warning("long-poll listener lost Redis (%s); polling the database", exc)
                self.listening.clear()
                self._stop.wait(1.0)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except (redis.RedisError, OSError):
                        pass
        self.listening.clear()

    def _wake(self, deferral_id: str) -> None:
        with self._lock:
            for woken in self._waiting.get(deferral_id, ()):
                woken.set()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._pid == os.getpid():
            self._thread.join(timeout=3)


def wait_until_ended(waiters: Waiters, deferral_id: str, seconds: float, read_status: Any) -> Any:
    """Re-read with `read_status()` until it reports an ended deferral or time runs out.

    `read_status()` opens and closes its own short session and returns
    `(ended, value)`; between reads the request holds no database connection. Reads
    happen on a wake-up, and every few seconds anyway in case a wake-up was lost.
    """
    deadline = time.monotonic() + seconds
    with waiters.watch(deferral_id) as woken:
        while True:
            ended, value = read_status()
            remaining = deadline - time.monotonic()
            if ended or remaining <= 0:
                return value
            fallback = 5.0 if waiters.listening.is_set() else 1.0
            woken.wait(min(remaining, fallback))
            woken.clear()


def read_deferral(svc: Services, deferral_id: str, wait_seconds: int) -> dict[str, Any]:
    """The deferral resource; with `wait_seconds`, once it has ended or the time is up.

    While it waits the caller holds no database connection: each read is its own short
    transaction, and the process's listener wakes it when the deferral ends. A waiting
    request holds a thread, so serve with gunicorn's gthread worker (README, "Serving").
    """

    def read_status() -> tuple[bool, dict[str, Any]]:
        with svc.db.read() as session:
            deferral = session.get(Deferral, deferral_id)
            return deferral.status in TERMINAL_STATUSES, deferral_resource(deferral)

    if wait_seconds <= 0:
        return read_status()[1]
    return wait_until_ended(svc.waiters, deferral_id, wait_seconds, read_status)
