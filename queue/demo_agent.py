"""The demo agent's jobs: post sample deferrals through the signed API, now and then.

Requests go through the app's own WSGI stack (Flask's test client) with real Standard
Webhooks signatures, so the demo exercises exactly what a remote agent would, without
depending on which port the web server listens on.
"""

from __future__ import annotations

import json
import logging
import random

from flask import current_app

from approval_queue.jobs import enqueue
from review import redis_keys
from review.demo import DEMO_AGENT, SAMPLES, demo_secret, ensure_demo, pending_demo_count
from review.ids import ulid
from review.services import Services, current_services
from review.signing import sign_headers

log = logging.getLogger(__name__)
SEED = 6  # deferrals posted when the demo starts
KEEP_PENDING = 12  # the ticker stops adding beyond this many undecided demo deferrals
TICK_SECONDS = 45


def post_sample(index: int) -> int:
    """Post SAMPLES[index] as the demo agent; return the HTTP status."""
    svc = current_services()
    secret = demo_secret(svc)
    if secret is None:
        log.warning("demo agent has no secret on file; run with COUNTERSIGN_DEMO=1 to set it up")
        return 0
    body = json.dumps(SAMPLES[index % len(SAMPLES)]).encode()
    headers = sign_headers(secret, f"demo-{ulid()}", body)
    response = current_app.test_client().post(
        f"/api/v1/agents/{DEMO_AGENT}/deferrals",
        data=body,
        headers={**headers, "Content-Type": "application/json"},
    )
    log.info("demo agent posted sample %d: %s", index, response.status_code)
    return response.status_code


def seed() -> int:
    """Post the first few samples so the queue is not empty on first look."""
    return sum(post_sample(i) == 202 for i in range(SEED))


def tick() -> None:
    """Post one more sample while the demo queue is short, then come back later."""
    svc = current_services()
    client = svc.redis.client()
    client.set(redis_keys.DEMO_TICKER, "1", ex=TICK_SECONDS * 3)
    if pending_demo_count(svc) < KEEP_PENDING:
        post_sample(random.randrange(len(SAMPLES)))
    enqueue(client, "approval_queue.demo_agent.tick", delay=TICK_SECONDS)


def start_demo_agent(svc: Services) -> None:
    """Called by the worker at start when COUNTERSIGN_DEMO=1."""
    ensure_demo(svc)
    client = svc.redis.client()
    if pending_demo_count(svc) == 0:
        enqueue(client, "approval_queue.demo_agent.seed")
    # One ticker chain, however many workers start: whoever sets the key starts it.
    if client.set(redis_keys.DEMO_TICKER, "1", nx=True, ex=TICK_SECONDS * 3):
        enqueue(client, "approval_queue.demo_agent.tick", delay=TICK_SECONDS)
