"""Wake-ups after a write commits: ended deferrals wake their long-polls, new callbacks
are queued for delivery at once.

Domain code only leaves notes in the session (`note_ended`, `note_callback`); after
the transaction commits, `after_commit` publishes them on Redis. Nothing here is
needed for correctness: a lost wake-up costs latency (the long-poll re-reads the
database every few seconds, the worker's relay finds callbacks nobody queued), never
a decision or a callback.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from sqlalchemy.orm import Session

from approval_queue import names
from approval_queue.jobs import enqueue
from review import redis_keys

log = logging.getLogger(__name__)
CHANNEL = "countersign:ended"
FLUSH_JOB = "approval_queue.delivery.flush"
# Set while a flush job waits in the queue: a burst of decisions queues one flush, not one
# job each. The flush deletes it as it starts, so a decision after that queues another.
FLUSH_KEY = "countersign:delivery:flush-queued"
FLUSH_KEY_SECONDS = 60


def note_ended(session: Session, deferral_id: str) -> None:
    session.info.setdefault("ended", []).append(deferral_id)


def note_deliver(session: Session, event_id: str) -> None:
    """Attempt this callback right after the commit (the worker's tick is the safety net)."""
    session.info.setdefault("deliver", []).append(event_id)


def note_agent_status(
    session: Session, slug: str, status_json: str, *, reset_breakers: bool = False
) -> None:
    """The agent's switch flipped: rewrite its cached status (and breakers) after the commit."""
    session.info.setdefault("agent_status", []).append((slug, status_json, reset_breakers))


def queue_flush(client: redis.Redis) -> bool:
    """Queue a delivery flush unless one is waiting already; True when this call queued it."""
    if client.set(FLUSH_KEY, "1", nx=True, ex=FLUSH_KEY_SECONDS):
        enqueue(client, FLUSH_JOB, queue_name=names.CALLBACKS)
        return True
    return False


def after_commit(client_for: Any, info: dict[str, Any]) -> None:
    """Publish what the committed transaction noted (`client_for()` gives the Redis client)."""
    ended, deliver = info.pop("ended", None), info.pop("deliver", None)
    statuses = info.pop("agent_status", None)
    if not ended and not deliver and not statuses:
        return
    try:
        client = client_for()
        for slug, status_json, reset_breakers in statuses or ():
            # Overwrite (readers only ever SET NX), so a reader's stale copy cannot win.
            pipe = client.pipeline(transaction=False)
            pipe.set(redis_keys.agent_status(slug), status_json, ex=redis_keys.STATUS_TTL_SECONDS)
            if reset_breakers:
                pipe.delete(redis_keys.flood(slug), redis_keys.rejections(slug))
            pipe.execute()
        if ended:
            pipe = client.pipeline(transaction=False)
            for deferral_id in ended:
                pipe.publish(CHANNEL, deferral_id)
            pipe.execute()
        if deliver:
            queue_flush(client)
    except redis.RedisError as exc:
        log.warning("wake-ups not sent (%s): long-polls and callbacks catch up on their own", exc)


class Waiters:
    """Long-polls waiting in this process for deferrals to end.

    One listener thread per process subscribes to CHANNEL and sets the events of the
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
                pubsub.subscribe(CHANNEL)
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
