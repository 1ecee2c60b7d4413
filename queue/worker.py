"""The worker process: an rq SimpleWorker with rq's scheduler, inside the app context.

SimpleWorker runs each job in the worker process itself: no fork per job, so the app,
its database pool and its Redis connection are built once and reused by every job.
"""

from __future__ import annotations

import logging
import time

import redis
from rq import SimpleWorker
from rq.exceptions import StopRequested
from rq.serializers import JSONSerializer

from approval_queue import names
from approval_queue.jobs import queue
from review.observability import heartbeat, multiprocess_dir
from review.observability.multiprocess import remove_dead_files
from review.services import Services

log = logging.getLogger(__name__)
RESTART_SECONDS = 2


def build_worker(svc: Services) -> SimpleWorker:
    client = svc.redis.client()
    return SimpleWorker(
        [queue(client, name) for name in names.ALL],
        connection=client,
        serializer=JSONSerializer,
    )


def run_worker(svc: Services, *, burst: bool = False) -> bool:
    """Work until stopped (or, with burst, until the queues are empty)."""
    from approval_queue.maintenance import beat, start_maintenance, tick

    folder = multiprocess_dir()
    if folder:  # an earlier run's files; the web's and this process's own stay
        remove_dead_files(folder)
    worker = build_worker(svc)
    if svc.settings.demo:
        from approval_queue.demo_agent import start_demo_agent

        start_demo_agent(svc)
    log.info("worker %s on %s (burst=%s)", worker.name, ", ".join(names.ALL), burst)
    if burst:  # one round of upkeep, then the queues until they are empty
        beat(svc, heartbeat.worker_name())
        tick(svc)
        return worker.work(burst=True, with_scheduler=True, logging_level="INFO")
    ticker = start_maintenance(svc)
    try:
        while True:
            try:
                worker.work(with_scheduler=True, logging_level="INFO")
            except (redis.RedisError, OSError) as exc:  # its teardown met a dead Redis
                log.warning("worker %s stopped on %s", worker.name, exc)
            if getattr(worker, "_shutdown_requested_date", None) is not None:
                return True  # SIGTERM or SIGINT: a stop that was asked for
            # rq retries a lost Redis only while it waits for a job; lost anywhere else
            # (a heartbeat, a job's bookkeeping) its loop ends. Start a fresh one.
            log.warning("worker loop ended without a stop request; starting again in 2 s")
            rebuilt = _rebuild_once_redis_answers(svc)
            if rebuilt is None:
                return True
            worker = rebuilt
    finally:
        ticker.stop()


def _rebuild_once_redis_answers(svc: Services) -> SimpleWorker | None:
    """A fresh worker, every RESTART_SECONDS until Redis answers; None on a stop request."""
    while True:
        try:
            time.sleep(RESTART_SECONDS)
        except StopRequested:  # rq's signal handler, still installed, met a SIGTERM
            return None
        try:
            return build_worker(svc)
        except (redis.RedisError, OSError) as exc:
            log.warning("Redis still unavailable (%s); trying again in %s s", exc, RESTART_SECONDS)
