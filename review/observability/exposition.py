"""The text /metrics answers: the processes' metrics and the scrape-time gauges.

In multiprocess mode the processes' metrics are the sums of every process's files in
PROMETHEUS_MULTIPROC_DIR (prometheus-client's MultiProcessCollector); otherwise they
are this process's own (metrics.REGISTRY). A registry is built per scrape, since
the gauges of review/observability/state.py are read through this app's Services.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy.exc import SQLAlchemyError

from review.embedded_redis import EmbeddedRedisError
from review.observability import metrics, multiprocess_dir, state
from review.services import Services

log = logging.getLogger(__name__)


def _process_metrics(_svc: Services) -> Iterator[Metric]:
    path = multiprocess_dir()
    return (MultiProcessCollector(None, path) if path else metrics.REGISTRY).collect()


SOURCES = (
    ("processes", _process_metrics),  # counters and histograms the processes observed
    ("database", state.database_gauges),
    ("redis", state.redis_gauges),
)


class _Scrape:
    """Every source's metrics; a source that fails is reported, and the rest served."""

    def __init__(self, svc: Services):
        self.svc = svc

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "countersign_scrape_source_up",
            "1 when the scrape read this source (processes, database, redis), 0 when it failed.",
            labels=["source"],
        )
        for source, read in SOURCES:
            try:
                families = list(read(self.svc))
            except (SQLAlchemyError, redis.RedisError, EmbeddedRedisError, OSError) as exc:
                log.warning("metrics: %s not read: %s", source, exc)
                families = None
            except Exception:  # a bug or a damaged file: logged in full, never a 500
                log.exception("metrics: %s not read", source)
                families = None
            up.add_metric([source], 0 if families is None else 1)
            yield from families or ()
        yield up


def exposition(svc: Services) -> bytes:
    """Prometheus text format (0.0.4) for one scrape."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Scrape(svc))
    return generate_latest(registry)
