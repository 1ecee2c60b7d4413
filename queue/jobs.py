"""Enqueueing jobs: by dotted function name with JSON arguments (ids, never objects)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from approval_queue import names


def queue(client: redis.Redis, name: str = names.DEFAULT) -> Queue:
    return Queue(name, connection=client, serializer=JSONSerializer)


def enqueue(
    client: redis.Redis,
    func: str,
    *args: Any,
    queue_name: str = names.DEFAULT,
    delay: float | None = None,
    job_id: str | None = None,
) -> Job:
    q = queue(client, queue_name)
    options: dict[str, Any] = {"job_id": job_id, "result_ttl": 600, "failure_ttl": 86400}
    if delay:
        return q.enqueue_in(timedelta(seconds=delay), func, *args, **options)
    return q.enqueue(func, *args, **options)
