"""Timed upkeep the worker runs: held decisions whose undo window closed take effect,
overdue deferrals expire, lapsed claims go back to the queue, due callbacks go out, the
audit chain gets its signed checkpoint, and the counts of repeated refusals of minutes
that have ended are written to the audit log.

A thread in each worker process ticks every TICK_SECONDS, writing the worker's heartbeat
each time (review/observability/heartbeat.py: /readyz and /metrics read it); a short
Redis key lets one worker do the upkeep per period however many run. It does not
depend on rq's scheduler, whose lock a SIGKILLed worker keeps for a minute: a crashed
worker's callbacks are found again on the next tick of any worker. When Redis is down
the database steps run anyway (they are conditional updates, safe to run twice); the
relay waits for Redis.
"""

from __future__ import annotations

import logging
import os
import threading

import redis

from approval_queue.delivery import relay
from review import redis_keys
from review.audit import checkpoints, repeats
from review.audit.chain import chained_write
from review.models import utcnow
from review.notifications.delivery import send_due
from review.notifications.planning import plan_due
from review.observability import heartbeat
from review.reviewing.expiry import expire_due
from review.reviewing.lapsed_claims import return_lapsed_claims
from review.reviewing.taking_effect import take_effect_due
from review.services import Services, current_services

log = logging.getLogger(__name__)
TICK_SECONDS = 5


def tick(svc: Services) -> None:
    """One round of upkeep; each step on its own, so one failing does not stop the others."""
    for name, step in (
        ("held decisions", take_effect_due),
        ("expiry", expire_due),
        ("lapsed claims", _return_lapsed),
        ("relay", relay),
        ("notifications", _notifications),
        ("repeated events", repeats.flush_due),
        ("checkpoint", _checkpoint),
    ):
        try:
            done = step(svc)
            if done:
                log.info("%s: %d", name, done)
        except Exception:  # logged; the next tick tries again
            log.exception("maintenance step %s failed", name)


def take_effect_job() -> int:
    """The job scheduled for the moment a held decision's window closes
    (review/reviewing/undo.py): every due one takes effect."""
    return take_effect_due(current_services())


def _return_lapsed(svc: Services) -> int:
    with chained_write(svc.db) as session:
        return return_lapsed_claims(session, utcnow())


def _notifications(svc: Services) -> int:
    """Plan what is due (review/notifications/planning.py), then start sending what is
    due; sending runs on its own threads, so this step never waits for a provider."""
    planned = plan_due(svc)
    send_due(svc)
    return planned


def _checkpoint(svc: Services) -> int:
    """A signed checkpoint when COUNTERSIGN_CHECKPOINT_INTERVAL has passed and there is news."""
    return 1 if checkpoints.take(svc) is not None else 0


def beat(svc: Services, name: str) -> None:
    """This worker's heartbeat, each tick (review/observability/heartbeat.py)."""
    try:
        heartbeat.beat(svc.redis.client(), name)
    except redis.RedisError as exc:  # /readyz reports Redis itself; the beat waits for it
        log.warning("worker heartbeat not written: %s", exc)


def _my_turn(svc: Services) -> bool:
    try:
        return bool(
            svc.redis.client().set(
                redis_keys.MAINTENANCE_TICK, os.getpid(), nx=True, px=TICK_SECONDS * 1000 - 200
            )
        )
    except redis.RedisError:
        return True  # no Redis to agree on turns: the database steps are safe to repeat


class Ticker(threading.Thread):
    def __init__(self, svc: Services):
        super().__init__(name="countersign-maintenance", daemon=True)
        self.svc = svc
        self.stopped = threading.Event()

    def run(self) -> None:
        name = heartbeat.worker_name()
        while not self.stopped.is_set():
            beat(self.svc, name)
            if _my_turn(self.svc):
                tick(self.svc)
            self.stopped.wait(TICK_SECONDS)

    def stop(self) -> None:
        self.stopped.set()


def start_maintenance(svc: Services) -> Ticker:
    ticker = Ticker(svc)
    ticker.start()
    return ticker
