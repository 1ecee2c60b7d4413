"""A per-process copy of agents' status objects, kept honest by Redis pub/sub.

The status endpoint is polled (PROTOCOL.md 4.5), and its Redis GET was a third of the
request's CPU. So each web process keeps the status text it last read, and drops it when
a flip says so: after a flip commits, the writing process forgets its own copy at once
(`forget`), and publishes the slug on AGENT_STATUS_CHANNEL (review/callbacks/wakeups.py)
after rewriting the Redis copy, so every other process's listener forgets it too.

A copy is served only while the listener is known to be in step with Redis, never on
trust: the listener PINGs on its subscription every PING_SECONDS, and Redis answers a
PING only after every message published to this subscriber before it, so when the answer
to a PING sent at T has been read, every flip published before T has been applied.
`get` serves a copy only when such a T is less than IN_STEP_SECONDS old. When the
subscription drops, is slow, or was never made, every read goes to Redis as before. So
a flip reaches every process's answers within IN_STEP_SECONDS at worst, and in the time
a pub/sub message takes (well under a millisecond on one host) normally.

A copy is also never older than redis_keys.STATUS_TTL_SECONDS, the bound a change
written without the wake-up (by hand, in the database) had before this cache.

The same listener serves the other per-process copies of what an agent is: whatever
registered with `also_forget` (the signing secrets' SecretCache, review/agents/registry.py)
forgets an agent whenever its status copy is forgotten here, and everything when the
subscription is lost and when a new one is first in step, so one subscription keeps them
all honest.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from review import redis_keys

log = logging.getLogger(__name__)

PING_SECONDS = 0.2
IN_STEP_SECONDS = 1.0


class StatusCache:
    """Status texts by slug, served while the invalidation listener is in step."""

    def __init__(
        self,
        client_for: Callable[[], redis.Redis],
        *,
        ping_seconds: float = PING_SECONDS,
        in_step_seconds: float = IN_STEP_SECONDS,
        max_age_seconds: float = redis_keys.STATUS_TTL_SECONDS,
    ):
        self._client_for = client_for
        self._ping_seconds = ping_seconds
        self._in_step_seconds = in_step_seconds
        self._max_age = max_age_seconds
        self._lock = threading.Lock()
        self._copies: dict[str, tuple[float, str]] = {}  # slug -> (read at, text)
        # Bumped by every invalidation: a read that began before one may not be kept.
        self._generation = 0
        self._in_step_at = float("-inf")  # when the newest answered PING was sent
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._stop = threading.Event()
        self._also_forget: list[Callable[[str | None], None]] = []

    # --- readers -------------------------------------------------------------------

    def in_step(self) -> bool:
        return time.monotonic() - self._in_step_at < self._in_step_seconds

    def get(self, slug: str) -> str | None:
        """The copy of `slug`'s status text, when it may be served; else None."""
        self._ensure_listener()
        copy = self._copies.get(slug)
        if copy is None or not self.in_step():
            return None
        if time.monotonic() - copy[0] >= self._max_age:
            return None
        return copy[1]

    def generation(self) -> int:
        """Take before reading Redis; hand to `keep` with what was read."""
        return self._generation

    def keep(self, slug: str, text: str, generation: int) -> None:
        """Keep `text`, read when `generation` was current, unless a flip came since."""
        with self._lock:
            if generation == self._generation and self.in_step():
                self._copies[slug] = (time.monotonic(), text)

    # --- invalidation --------------------------------------------------------------

    def also_forget(self, forget: Callable[[str | None], None]) -> None:
        """Call `forget(slug)` whenever an agent's copy is dropped, `forget(None)` for all."""
        self._also_forget.append(forget)

    def _others_forget(self, slug: str | None) -> None:
        for forget in self._also_forget:
            forget(slug)

    def ensure_listening(self) -> None:
        """Start the listener in this process if it is not running (reads do it too)."""
        self._ensure_listener()

    def forget(self, slug: str | None = None) -> None:
        """Drop one agent's copy (or all): its status, secrets or settings changed."""
        with self._lock:
            self._generation += 1
            if slug is None:
                self._copies.clear()
            else:
                self._copies.pop(slug, None)
        self._others_forget(slug)

    def after_commit(self, info: dict[str, Any]) -> None:
        """The writing process forgets at once what its transaction flipped."""
        for slug in info.pop("agent_status_changed", None) or ():
            self.forget(slug)

    # --- the listener --------------------------------------------------------------

    def _ensure_listener(self) -> None:
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                if self._pid != os.getpid():  # a forked child starts with nothing it trusts
                    self._copies.clear()
                    self._in_step_at = float("-inf")
                    self._others_forget(None)
                self._pid = os.getpid()
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self._listen, name="countersign-status-cache", daemon=True
                )
                self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            subscription = None
            try:
                client = self._client_for()
                subscription = _Subscription(client.connection_pool, self._out_of_step)
                subscription.subscribe(redis_keys.AGENT_STATUS_CHANNEL)
                self._follow(subscription)
            except (redis.RedisError, OSError, ValueError) as exc:
                if self.in_step():
                    log.warning("status cache lost Redis (%s); status reads go to Redis", exc)
            finally:
                self._out_of_step()
                if subscription is not None:
                    try:
                        subscription.close()
                    except (redis.RedisError, OSError):
                        pass
            self._stop.wait(0.5)

    def _follow(self, subscription: _Subscription) -> None:
        """Apply flips and PING on schedule until stopped or the connection fails."""
        sent: dict[str, float] = {}  # PINGs not yet answered: their tag -> when sent
        number = 0
        next_ping = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_ping:
                if subscription.reconnected:  # PINGs sent before it are lost for good
                    subscription.reconnected = False
                    sent.clear()
                number += 1
                sent[str(number)] = now
                subscription.ping(str(number))
                next_ping = now + self._ping_seconds
            message = subscription.get_message(timeout=max(0.0, next_ping - time.monotonic()))
            if message is None:
                continue
            data = message["data"]
            data = data.decode() if isinstance(data, bytes) else data
            if message["type"] == "message":
                self.forget(data)
            elif message["type"] == "pong" and data in sent and not subscription.reconnected:
                answered_at = sent.pop(data)
                for older in [tag for tag, at in sent.items() if at < answered_at]:
                    del sent[older]  # answered out of order never: lost with a connection
                if self._in_step_at == float("-inf"):
                    # Newly subscribed: what the others kept before may have missed a message
                    # (the status copies were never kept out of step; they need not).
                    self._others_forget(None)
                self._in_step_at = answered_at

    def _out_of_step(self) -> None:
        with self._lock:
            was_in_step = self._in_step_at != float("-inf")
            self._in_step_at = float("-inf")
            self._generation += 1
            self._copies.clear()
        if was_in_step:  # once, not at every failed retry while Redis is down
            self._others_forget(None)  # whatever was published meanwhile is lost

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._pid == os.getpid():
            self._thread.join(timeout=3)


class _Subscription(redis.client.PubSub):
    """A PubSub that says when redis-py reconnected it behind our back.

    redis-py reconnects and subscribes again on its own after a dropped connection;
    whatever was published in between is lost, so the cache must forget everything.
    """

    def __init__(self, pool: redis.ConnectionPool, on_reconnect: Callable[[], None]):
        super().__init__(pool, ignore_subscribe_messages=True)
        self._on_reconnect = on_reconnect
        self.reconnected = False

    def on_connect(self, connection: Any) -> None:
        self.reconnected = True
        self._on_reconnect()
        super().on_connect(connection)
