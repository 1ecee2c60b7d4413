"""Long-polls: agents that cannot receive callbacks wait for their deferral to end.

`GET /api/v1/deferrals/{id}?wait=N` holds the request, never a database connection:
one listener thread per process subscribes to the channel that wake-ups publish on
(review/callbacks/wakeups.py) and wakes the requests waiting for each id.

A waiting request does hold a thread, so an agent may hold at most
COUNTERSIGN_LONG_POLLS_PER_AGENT of them at once (counted in Redis for every web
process; 429 `rate_limited` beyond), and a wait ends as soon as its client has gone.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import redis
from redis.commands.core import Script

from review import redis_keys
from review.errors import RateLimited
from review.models import TERMINAL_STATUSES, Deferral
from review.observability.metrics import long_poll_in_flight
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


CLIENT_CHECK_SECONDS = 1.0  # how often a waiting request looks whether its client has gone


def wait_until_ended(
    waiters: Waiters,
    deferral_id: str,
    seconds: float,
    read_status: Any,
    client_gone: Callable[[], bool] = lambda: False,
) -> Any:
    """Re-read with `read_status()` until it reports an ended deferral, time runs out or
    `client_gone()` says nobody is waiting for the answer any more.

    `read_status()` opens and closes its own short session and returns
    `(ended, value)`; between reads the request holds no database connection. Reads
    happen on a wake-up, and every few seconds anyway in case a wake-up was lost.
    """
    deadline = time.monotonic() + seconds
    with long_poll_in_flight(), waiters.watch(deferral_id) as woken:
        while True:
            ended, value = read_status()
            remaining = deadline - time.monotonic()
            if ended or remaining <= 0:
                return value
            fallback = 5.0 if waiters.listening.is_set() else 1.0
            next_read = time.monotonic() + min(remaining, fallback)
            while not woken.is_set():
                left = next_read - time.monotonic()
                if left <= 0:
                    break
                woken.wait(min(left, CLIENT_CHECK_SECONDS))
                if client_gone():
                    return value
            woken.clear()


def socket_closed(sock: socket.socket) -> bool:
    """True once the client closed its end of the connection (reads end-of-file or fails).

    A peek, so bytes the client did send (a pipelined request) stay for the server. A
    socket that cannot be peeked at (TLS in the server itself) never reads as closed.
    """
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False  # open, nothing sent: the client is still waiting
    except (ConnectionError, TimeoutError):
        return True
    except (OSError, ValueError):
        return False


# KEYS: the agent's long-polls. ARGV: now, cap, request id, its expiry. {1, 0} admitted;
# {0, seconds until the first place lapses} when the agent already holds `cap` of them.
_TAKE_PLACE = Script(
    None,
    b"""
    local now = tonumber(ARGV[1])
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
    if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
      local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
      return {0, math.ceil(tonumber(first[2]) - now)}
    end
    redis.call('ZADD', KEYS[1], tonumber(ARGV[4]), ARGV[3])
    local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
    redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(last[2]) - now) + 1)
    return {1, 0}
    """,
)
PLACE_MARGIN_SECONDS = 5  # a place outlives its wait by this much, then lapses by itself


class _LocalPlaces:
    """Without Redis: the long-polls each agent holds in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}

    def take(self, slug: str, cap: int) -> bool:
        with self._lock:
            if self._held.get(slug, 0) >= cap:
                return False
            self._held[slug] = self._held.get(slug, 0) + 1
            return True

    def give_back(self, slug: str) -> None:
        with self._lock:
            self._held[slug] -= 1
            if not self._held[slug]:
                del self._held[slug]


_local_places = _LocalPlaces()


@contextmanager
def long_poll_place(svc: Services, slug: str, seconds: int) -> Iterator[None]:
    """One of the agent's COUNTERSIGN_LONG_POLLS_PER_AGENT places, held while it waits.

    RateLimited when the agent holds them all. Each place is a request id in a sorted
    set scored by its expiry, trimmed on every use: a process that dies holding places
    loses them `seconds` + PLACE_MARGIN_SECONDS later. Without Redis, each process counts
    its own.
    """
    cap = svc.settings.long_polls_per_agent
    if cap == 0:
        yield
        return
    key, place, now = redis_keys.long_polls(slug), uuid.uuid4().hex, time.time()
    try:
        client = svc.redis.client()
        admitted, retry_after = _TAKE_PLACE(
            keys=[key], args=[now, cap, place, now + seconds + PLACE_MARGIN_SECONDS], client=client
        )
    except redis.RedisError:
        client = None
        admitted, retry_after = (1, 0) if _local_places.take(slug, cap) else (0, 1)
    if not admitted:
        raise RateLimited(
            f"this agent already holds {cap} long-polls; wait for one to end",
            retry_after=max(1, math.ceil(retry_after)),
        )
    try:
        yield
    finally:
        if client is None:
            _local_places.give_back(slug)
        else:
            try:
                client.zrem(key, place)
            except redis.RedisError:
                pass  # the place lapses at its expiry


def read_deferral(
    svc: Services,
    deferral_id: str,
    wait_seconds: int,
    *,
    agent_slug: str,
    client_gone: Callable[[], bool] = lambda: False,
) -> dict[str, Any]:
    """The deferral resource; with `wait_seconds`, once it has ended or the time is up.

    While it waits the caller holds no database connection: each read is its own short
    transaction, and the process's listener wakes it when the deferral ends. A waiting
    request holds a thread (serve with gunicorn's gthread worker, README "Serving"), so
    it holds one of its agent's long-poll places too, and stops waiting once
    `client_gone()` says the answer has nobody to go to.
    """

    def read_status() -> tuple[bool, dict[str, Any]]:
        with svc.db.read() as session:
            deferral = session.get(Deferral, deferral_id)
            ended, resource = deferral.status in TERMINAL_STATUSES, deferral_resource(deferral)
        if deferral.status == "in_review" and _took_effect(svc, deferral_id):
            with svc.db.read() as session:  # a reviewer's decision whose undo window closed
                deferral = session.get(Deferral, deferral_id)
                ended, resource = deferral.status in TERMINAL_STATUSES, deferral_resource(deferral)
        return ended, resource

    ended, resource = read_status()
    if ended or wait_seconds <= 0:
        return resource
    with long_poll_place(svc, agent_slug, wait_seconds):
        return wait_until_ended(svc.waiters, deferral_id, wait_seconds, read_status, client_gone)


def _took_effect(svc: Services, deferral_id: str) -> bool:
    """Whether a reviewer's held decision on it was due and has now taken effect
    (review/reviewing/undo.py): the API never shows a window that has closed."""
    from review.reviewing.taking_effect import take_effect_if_due  # the domain imports this

    return take_effect_if_due(svc, [deferral_id]) > 0
