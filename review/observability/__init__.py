"""Observability: the metrics /metrics serves, and the worker's heartbeat.

- metrics.py: every metric the processes observe (names, types, labels), and the notes
  domain code leaves for them in a transaction's session.
- state.py: the gauges that describe the database and Redis, read when /metrics is
  scraped, never kept in a process.
- heartbeat.py: the worker's heartbeat in Redis, read by /readyz and by the scrape.
- multiprocess.py: the folder that gunicorn's workers and the rq worker share
  (PROMETHEUS_MULTIPROC_DIR), made fresh by `serve`, and gunicorn's child_exit hook.

The view is review/web/metrics_view.py; the names are listed in docs/METRICS.md.
"""

from __future__ import annotations

import os

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The shared folder of multiprocess mode, created if missing; None: one process.

    prometheus-client chooses its mode when it is imported and writes its files into the
    folder as soon as a metric exists: a missing folder would stop the app at import.
    """
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        return None
    os.makedirs(path, exist_ok=True)
    return path


multiprocess_dir()
