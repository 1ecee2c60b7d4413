"""Wake-ups after a write commits: ended deferrals wake their long-polls, new callbacks
are queued for delivery at once.

Domain code only leaves notes in the session's `info` (`note_ended`, `note_deliver`), or
in a `write_core()`'s `Notes` (review/db.py); after the transaction commits,
`after_commit` publishes them on Redis (the endings in the live pages' round trip:
review/reviewing/live.py). Nothing here is needed for correctness: a lost
wake-up costs latency (the long-poll re-reads the database every few seconds, the
worker's relay finds callbacks nobody queued), never a decision or a callback.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from sqlalchemy.orm import Session

from approval_queue import names
from approval_queue.jobs import enqueue
from review import redis_keys
from review.db import Notes

log = logging.getLogger(__name__)
FLUSH_JOB = "approval_queue.delivery.flush"
FLUSH_KEY_SECONDS = 60


def note_ended(session: Session | Notes, deferral_id: str) -> None:
    session.info.setdefault("ended", []).append(deferral_id)


def note_deliver(session: Session | Notes, event_id: str) -> None:
    """Attempt this callback right after the commit (the worker's tick is the safety net)."""
    session.info.setdefault("deliver", []).append(event_id)


def note_agent_status(
    session: Session | Notes, slug: str, status_json: str, *, reset_breakers: bool = False
) -> None:
    """The agent's switch flipped: rewrite its cached status (and breakers) after the commit,
    and have every process's status cache forget its copy (review/agents/status_cache.py)."""
    session.info.setdefault("agent_status", []).append((slug, status_json, reset_breakers))
    session.info.setdefault("agent_status_changed", []).append(slug)


def note_agent_changed(session: Session | Notes, slug: str) -> None:
    """The agent's signing secrets or settings changed (a rotation, a deactivation, a new
    breaker override): after the commit, every process forgets its cached signer (and its
    status copy) at once, on the status cache's channel (review/agents/status_cache.py)."""
    session.info.setdefault("agent_changed", []).append(slug)
    session.info.setdefault("agent_status_changed", []).append(slug)  # this process's


def queue_flush(client: redis.Redis) -> bool:
    """Queue a delivery flush unless one is waiting already; True when this call queued it."""
    if client.set(redis_keys.DELIVERY_FLUSH_QUEUED, "1", nx=True, ex=FLUSH_KEY_SECONDS):
        enqueue(client, FLUSH_JOB, queue_name=names.CALLBACKS)
        return True
    return False


def after_commit(client_for: Any, info: dict[str, Any]) -> None:
    """Publish what the committed transaction noted (`client_for()` gives the Redis client).
    The endings are published by the live pages' hook, which runs first, in its one round
    trip (review/reviewing/live.py): what it leaves in "ended" (none, as the hooks are
    registered in review/services.py) is published here."""
    ended, deliver = info.pop("ended", None), info.pop("deliver", None)
    statuses = info.pop("agent_status", None)
    changed = info.pop("agent_changed", None)
    if not ended and not deliver and not statuses and not changed:
        return
    try:
        client = client_for()
        for slug, status_json, reset_breakers in statuses or ():
            # Overwrite (readers only ever SET NX), so a reader's stale copy cannot win.
            pipe = client.pipeline(transaction=False)
            pipe.set(redis_keys.agent_status(slug), status_json, ex=redis_keys.STATUS_TTL_SECONDS)
            if reset_breakers:
                pipe.delete(redis_keys.flood(slug), redis_keys.rejections(slug))
            # After the rewrite: a process that drops its copy reads the new status.
            pipe.publish(redis_keys.AGENT_STATUS_CHANNEL, slug)
            pipe.execute()
        if changed:
            pipe = client.pipeline(transaction=False)
            for slug in dict.fromkeys(changed):
                pipe.publish(redis_keys.AGENT_STATUS_CHANNEL, slug)
            pipe.execute()
        if ended:
            pipe = client.pipeline(transaction=False)
            for deferral_id in ended:
                pipe.publish(redis_keys.ENDED_CHANNEL, deferral_id)
            pipe.execute()
        if deliver:
            queue_flush(client)
    except redis.RedisError as exc:
        log.warning(
            "wake-ups not sent (%s): long-polls and callbacks catch up on their own, other "
            "processes' cached agents within their TTL",
            exc,
        )
