"""Timed upkeep the worker runs: overdue deferrals expire, lapsed claims go back to the
queue, due callbacks go out.

One chain of self-rescheduling jobs however many workers run: whoever sets the
ticker key first starts it, and each run re-arms it (even when it fails).
"""

from __future__ import annotations

import logging

from approval_queue.delivery import relay
from approval_queue.jobs import enqueue
from review.batches import return_lapsed_claims
from review.expiry import expire_due
from review.models import utcnow
from review.runtime import Runtime, current_runtime

log = logging.getLogger(__name__)
TICK_SECONDS = 5
TICKER_KEY = "countersign:maintenance:ticker"
JOB = "approval_queue.maintenance.tick"


def tick() -> None:
    """One round of upkeep; each step on its own, so one failing does not stop the others."""
    rt = current_runtime()
    client = rt.redis.client()
    try:
        for name, step in (
            ("expiry", expire_due),
            ("lapsed claims", _return_lapsed),
            ("relay", lambda _rt: relay()),
        ):
            try:
                done = step(rt)
                if done:
                    log.info("%s: %d", name, done)
            except Exception:  # logged; the next tick tries again
                log.exception("maintenance step %s failed", name)
    finally:
        client.set(TICKER_KEY, "1", ex=TICK_SECONDS * 3)
        enqueue(client, JOB, delay=TICK_SECONDS)


def _return_lapsed(rt: Runtime) -> int:
    with rt.db.write() as session:
        return return_lapsed_claims(session, utcnow())


def start_maintenance(rt: Runtime) -> None:
    client = rt.redis.client()
    if client.set(TICKER_KEY, "1", nx=True, ex=TICK_SECONDS * 3):
        enqueue(client, JOB)
