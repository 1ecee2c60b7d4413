"""Live pages: what a batch or the queue page polls to learn, within two seconds, that
an item changed elsewhere (a kill, a lease lost, a decision, a second approval).

After a write commits, the deferrals it changed bump a Redis counter: the change's
number is `countersign:live:version`, and each changed deferral's key keeps the number
of its last change (review/redis_keys.py). A page carries the number it was rendered
at; its poll (review/web/live_pages.py, every 1.5 s) compares that with the counter,
one Redis GET, and answers 204 while nothing changed: no database query, no session
read from the database. Only when the number moved does it read which of its items
changed (one MGET) and render those, so the database is asked only about what changed.

Domain code notes changes in the session (`note_changed`); endings are noted already
(review/callbacks/wakeups.py's `note_ended`), and the same round trip publishes them
for the long-polls; intake bumps the counter for new
pending deferrals (`Arrivals`, by a thread that sends one INCR for however many arrived
since its last), so the queue hears of arrivals by the same poll.
Losing Redis costs liveness, never data: the counter then reads as unknown and pages
fall back to a full refresh.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
from typing import Any

import redis
from sqlalchemy.orm import Session

from review import pooled_redis, redis_keys

log = logging.getLogger(__name__)
KEEP_SECONDS = 3600  # a page older than this re-renders whatever changed
# The arrivals' thread waits this long after an arrival for others to send with it: a
# notice comes a twentieth of a second later, next to the queue pages' 1.5 s polls.
GATHER_SECONDS = 0.05


def note_changed(session: Session, *deferral_ids: str) -> None:
    """These deferrals changed in a way their pages show (claimed, returned, released,
    given a first approval, edited); published after the commit."""
    session.info.setdefault("live", []).extend(deferral_ids)


def after_commit(client_for: Any, info: dict[str, Any]) -> None:
    """Bump the counter and stamp each changed deferral with the new number; in the same
    round trip, publish each ended one for its long-polls (the wake-up that
    review/callbacks/wakeups.py sent in a round trip of its own: it takes "ended" from
    `info` no more, as this hook runs before it)."""
    ended = info.pop("ended", None) or []
    changed = list(dict.fromkeys([*info.pop("live", ()), *ended]))
    if not changed:
        return
    keys = [redis_keys.LIVE_VERSION, *(redis_keys.live_deferral(i) for i in changed)]
    try:
        client_for().eval(_BUMP, len(keys), *keys, KEEP_SECONDS, redis_keys.ENDED_CHANNEL, *ended)
    except redis.RedisError as exc:
        log.warning(
            "live pages not told of %d changes, long-polls of %d endings (%s)",
            len(changed),
            len(ended),
            exc,
        )


class Arrivals:
    """Intake's notices of new pending deferrals, sent by a thread of this process's own.

    A request only notes its arrival after its commit (`note`: a number and a put on a
    C queue, no round trip); the thread, woken, gathers arrivals for `GATHER_SECONDS`
    and sends one INCR for however many it has, so the counter moves after each
    commit, once for many. A page or a poll this process answers first sends what is
    noted and not yet sent (`version_after_arrivals`), so a poll never misses a deferral
    this process received, nor is sent one its page already shows. Losing Redis
    loses the notices (logged), never an intake. The thread starts at the first
    arrival (again in a forked child, which has no thread of its parent's).
    """

    def __init__(self, client_for: Any):
        self._client_for = client_for
        self._numbers = itertools.count(1)
        self._noted = 0  # the latest arrival noted (concurrent notes may store out of order)
        self._sent = 0  # every arrival up to this one has been sent (or lost to an outage)
        self._queue: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._send_lock = threading.Lock()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._start_lock = threading.Lock()
        self.sends = 0  # INCRs sent, for tests and curiosity

    def note(self) -> None:
        """A new pending deferral committed: the queue pages' polls are to re-read it."""
        self._noted = number = next(self._numbers)
        if self._pid != os.getpid():
            self._start()
        self._queue.put(number)

    def send_noted(self) -> None:
        """Send now whatever this process noted and has not sent yet."""
        if self._noted > self._sent:
            self._send(self._noted)

    def close(self) -> None:
        """Send what is noted and stop the thread."""
        if self._thread is not None and self._pid == os.getpid():
            self._closing.set()  # no gathering: what is noted goes now
            self._queue.put(None)
            self._thread.join(timeout=3)
        self.send_noted()
        self._thread = None
        self._pid = 0

    def _start(self) -> None:
        with self._start_lock:
            if self._pid != os.getpid():
                self._queue = queue.SimpleQueue()  # a parent's, if forked, is not ours
                self._send_lock = threading.Lock()
                self._closing = threading.Event()
                self._thread = threading.Thread(
                    target=self._run, name="countersign-arrivals", daemon=True
                )
                self._thread.start()
                self._pid = os.getpid()

    def _run(self) -> None:
        waiting = self._queue
        while True:
            latest, stop = 0, False
            item = waiting.get()
            self._closing.wait(GATHER_SECONDS)
            while True:  # whatever arrived meanwhile goes in the same INCR
                if item is None:
                    stop = True
                elif item > latest:
                    latest = item
                if waiting.empty():
                    break
                item = waiting.get_nowait()
            if latest:
                self._send(latest)
            if stop:
                return

    def _send(self, number: int) -> None:
        with self._send_lock:
            if number <= self._sent:
                return
            try:  # on a pooled connection (review/pooled_redis.py)
                pooled_redis.command(self._client_for(), "INCR", redis_keys.LIVE_VERSION)
            except redis.RedisError as exc:
                log.warning("live pages not told of new deferrals (%s)", exc)
            except Exception:  # never let the thread die: later arrivals still need it
                log.exception("live pages not told of new deferrals")
            self._sent = max(self._sent, number)
            self.sends += 1


# One round trip, in Redis: the new number, each changed deferral stamped with it, and
# each ended one (ARGV[3] on) published on the ended channel (ARGV[2]) for its long-polls
# (it was an INCR, a pipeline of SETs and a pipeline of PUBLISHes: three round trips
# after every decision).
_BUMP = """
local number = redis.call('INCR', KEYS[1])
for i = 2, #KEYS do redis.call('SET', KEYS[i], number, 'EX', ARGV[1]) end
for i = 3, #ARGV do redis.call('PUBLISH', ARGV[2], ARGV[i]) end
return number
"""


def version(client: redis.Redis) -> int:
    """The number of the latest change (0: none yet); -1 when Redis does not answer."""
    try:
        return int(client.get(redis_keys.LIVE_VERSION) or 0)
    except redis.RedisError:
        return -1


def version_after_arrivals(arrivals: Arrivals, client: redis.Redis) -> int:
    """`version`, read once this process's noted arrivals are sent: what a page or a poll
    then reads from the database holds every deferral this process received up to that
    number, so its next poll is not sent a change it already shows (or misses one)."""
    arrivals.send_noted()
    return version(client)


def changed_since(client: redis.Redis, since: int, ids: list[str]) -> list[str] | None:
    """Which of `ids` changed after change number `since`; None when Redis cannot say
    (treat all as changed)."""
    if not ids:
        return []
    try:
        numbers = client.mget([redis_keys.live_deferral(i) for i in ids])
    except redis.RedisError:
        return None
    return [i for i, n in zip(ids, numbers, strict=True) if n is not None and int(n) > since]
