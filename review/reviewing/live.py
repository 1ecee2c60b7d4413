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
for the long-polls; intake bumps the counter for each new
pending deferral (`note_arrival`), so the queue hears of arrivals by the same poll.
Losing Redis costs liveness, never data: the counter then reads as unknown and pages
fall back to a full refresh.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from sqlalchemy.orm import Session

from review import pooled_redis, redis_keys

log = logging.getLogger(__name__)
KEEP_SECONDS = 3600  # a page older than this re-renders whatever changed


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


def note_arrival(client_for: Any) -> None:
    """A new deferral reached the queue (called by intake after its commit): bump the
    counter so the queue pages' polls re-read it. One INCR and nothing else: no
    deferral is stamped, since no open page holds the new one yet (a batch's poll then
    finds none of its items changed and costs no database)."""
    try:  # on a pooled connection: intake sends it for every deferral (review/pooled_redis.py)
        pooled_redis.command(client_for(), "INCR", redis_keys.LIVE_VERSION)
    except redis.RedisError as exc:
        log.warning("live pages not told of a new deferral (%s)", exc)


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
