"""Gauges read when /metrics is scraped: what the database and Redis hold right now.

Nothing here is kept in a process: each scrape asks, so every web process answers the
same and a restarted one is right at once. A scrape costs three queries and one Redis
round trip, each served by an index or a key (docs/METRICS.md says which):

- undecided deferrals by status and level, with the oldest one's age: one GROUP BY over
  `status IN ('pending', 'in_review')`, found by ix_deferrals_status_level_rank
  (status, risk_level, rank). Its cost grows with the undecided deferrals only (each
  agent holds at most COUNTERSIGN_AGENT_MAX_PENDING), never with the decided history.
- callbacks waiting and dead letters: a GROUP BY over `status IN ('pending', 'dead')`
  on ix_outbox_status_next (status, next_attempt_at), and the earliest due callback:
  min(next_attempt_at) for status 'pending', the first entry of that index.
- rq's queue lengths (LLEN), its scheduled jobs (ZCARD) and the workers' heartbeats.

A source that fails is reported as `countersign_scrape_source_up{source} 0` and its
gauges are left out (review/observability/exposition.py): the scrape still answers 200.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from rq import Queue
from sqlalchemy import func, select

from approval_queue import names
from review.intake.policy import LEVELS
from review.models import PENDING_STATUSES, Deferral, OutboxEvent, utcnow
from review.observability import heartbeat
from review.services import Services


def database_gauges(svc: Services) -> Iterator[Metric]:
    now = utcnow()
    with svc.db.read() as session:
        undecided = session.execute(
            select(
                Deferral.status, Deferral.risk_level, func.count(), func.min(Deferral.created_at)
            )
            .where(Deferral.status.in_(PENDING_STATUSES))
            .group_by(Deferral.status, Deferral.risk_level)
        ).all()
        outbox = dict(
            session.execute(
                select(OutboxEvent.status, func.count())
                .where(OutboxEvent.status.in_(("pending", "dead")))
                .group_by(OutboxEvent.status)
            ).all()
        )
        first_due = session.scalar(
            select(func.min(OutboxEvent.next_attempt_at)).where(OutboxEvent.status == "pending")
        )
    pending = GaugeMetricFamily(
        "countersign_deferrals_pending",
        "Undecided deferrals, by status (pending: in the queue; in_review: claimed) and "
        "risk level.",
        labels=["status", "level"],
    )
    counts = {(status, level): 0 for status in PENDING_STATUSES for level in LEVELS}
    oldest = None
    for status, level, count, created_at in undecided:
        counts[(status, level)] = count
        if created_at is not None and (oldest is None or created_at < oldest):
            oldest = created_at
    for (status, level), count in sorted(counts.items()):
        pending.add_metric([status, level], count)
    yield pending
    yield GaugeMetricFamily(
        "countersign_deferrals_oldest_pending_age_seconds",
        "Age of the oldest undecided deferral (pending or in_review); 0 when there is none.",
        value=0 if oldest is None else max((now - oldest).total_seconds(), 0.0),
    )
    yield GaugeMetricFamily(
        "countersign_outbox_depth",
        "Callbacks waiting to be delivered (due now or scheduled for a retry).",
        value=outbox.get("pending", 0),
    )
    yield GaugeMetricFamily(
        "countersign_outbox_dead_letters",
        "Callbacks given up on (dead letters), until redelivered.",
        value=outbox.get("dead", 0),
    )
    overdue = 0.0 if first_due is None else max((now - first_due).total_seconds(), 0.0)
    yield GaugeMetricFamily(
        "countersign_outbox_oldest_due_seconds",
        "How long the earliest due callback has been due; 0 when none is due.",
        value=overdue,
    )


def redis_gauges(svc: Services) -> Iterator[Metric]:
    client = svc.redis.client()
    queues = [Queue(name, connection=client) for name in names.ALL]
    pipe = client.pipeline(transaction=False)
    for q in queues:
        pipe.llen(q.key)
        pipe.zcard(q.scheduled_job_registry.key)
    lengths = pipe.execute()
    beats = heartbeat.read(client, svc.settings.worker_stale_after, time.time())
    depth = GaugeMetricFamily(
        "countersign_rq_queue_depth", "Jobs waiting in rq's queue.", labels=["queue"]
    )
    scheduled = GaugeMetricFamily(
        "countersign_rq_scheduled_jobs",
        "Jobs scheduled for later (callback retries) in rq's queue.",
        labels=["queue"],
    )
    for i, q in enumerate(queues):
        depth.add_metric([q.name], lengths[2 * i])
        scheduled.add_metric([q.name], lengths[2 * i + 1])
    yield depth
    yield scheduled
    yield GaugeMetricFamily(
        "countersign_worker_heartbeat_timestamp_seconds",
        "Unix time of the newest worker heartbeat; 0 when no worker has beaten.",
        value=beats.newest or 0,
    )
    if beats.age is not None:
        yield GaugeMetricFamily(
            "countersign_worker_heartbeat_age_seconds",
            "Seconds since the newest worker heartbeat; absent when no worker has beaten.",
            value=beats.age,
        )
    yield GaugeMetricFamily(
        "countersign_workers_fresh",
        "Worker processes whose last heartbeat is within COUNTERSIGN_WORKER_STALE_AFTER.",
        value=beats.fresh_workers,
    )
