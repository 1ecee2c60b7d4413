"""The agent's status object (PROTOCOL.md 4.5), as agents poll it: served from this
process's copy while that is known to be current (review/agents/status_cache.py), else
from Redis, else from the database.

A flip overwrites the cached copy right after it commits (review/callbacks/wakeups.py);
a reader that missed the cache only adds its copy if none is there (SET NX), so a
reader that read the database just before a flip cannot put the old state back.
"""

from __future__ import annotations

import json

import redis

from review import redis_keys
from review.agents.registry import Signer
from review.models import Agent
from review.resources import agent_status
from review.services import Services


def status_json(svc: Services, signer: Signer) -> str:
    """The agent's status object as JSON text: from the caches, else the database."""
    copy = svc.statuses.get(signer.slug)
    if copy is not None:
        return copy
    generation = svc.statuses.generation()
    key = redis_keys.agent_status(signer.slug)
    client = svc.redis.client()
    try:
        cached = client.get(key)
    except redis.RedisError:
        cached = None
    if cached is not None:
        text = cached.decode()
        svc.statuses.keep(signer.slug, text, generation)
        return text
    with svc.db.read() as session:
        text = json.dumps(agent_status(session.get(Agent, signer.id)))
    try:
        client.set(key, text, nx=True, ex=redis_keys.STATUS_TTL_SECONDS)
    except redis.RedisError:
        pass
    svc.statuses.keep(signer.slug, text, generation)
    return text
