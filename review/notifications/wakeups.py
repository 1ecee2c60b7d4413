"""After a write commits: queue a send job for the notifications it wrote, and observe
the time from each channel's first message to the decisions it made.

Nothing here is needed for correctness: a lost wake-up waits for the worker's next tick.
"""

from __future__ import annotations

import logging
from typing import Any

import redis

from approval_queue import names
from approval_queue.jobs import enqueue
from review import redis_keys
from review.observability import metrics

log = logging.getLogger(__name__)
SEND_JOB = "review.notifications.delivery.send_job"
QUEUED_KEY_SECONDS = 60


def after_commit(client_for: Any, info: dict[str, Any]) -> None:
    for channel, seconds in info.pop("notified_decided", ()):
        metrics.observe_notified_decision(channel, seconds)
    if not info.pop("notify", False):
        return
    try:
        client = client_for()
        if client.set(redis_keys.NOTIFY_SEND_QUEUED, "1", nx=True, ex=QUEUED_KEY_SECONDS):
            enqueue(client, SEND_JOB, queue_name=names.DEFAULT)
    except redis.RedisError as exc:
        log.warning("notification wake-up not sent (%s): the worker's tick sends them", exc)
