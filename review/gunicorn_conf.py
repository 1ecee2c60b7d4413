"""gunicorn's settings for Countersign's web app.

    gunicorn --config python:review.gunicorn_conf --bind 127.0.0.1:8000 review.wsgi:app

`countersign serve` and deploy/countersign-web.service use it. It is a module in the
package (not a ./gunicorn.conf.py) so that an installed copy has it, and so that a gunicorn
started from the repository root for something else does not pick it up unasked.
Anything given on gunicorn's command line wins over what is set here (`--workers 4`).
"""

from __future__ import annotations

import os
from pathlib import Path

from review.bundled import default_instance_dir
from review.observability import multiprocess as metric_files

# --- workers ------------------------------------------------------------------------
# Threads, not async workers: the app is plain WSGI with blocking database and Redis
# calls. A long-poll (GET /api/v1/deferrals/{id}?wait=N, N <= 60) holds one thread, never a
# database connection, and COUNTERSIGN_LONG_POLLS_PER_AGENT caps how many an agent holds;
# 32 threads leave room for them beside ordinary requests. Each worker process is one
# Python interpreter: about one per core.
worker_class = "gthread"
threads = 32
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))

# --- timeouts -----------------------------------------------------------------------
# A gthread worker tells the arbiter it is alive from its own loop, not from the threads
# that serve requests, so `timeout` kills only a worker whose loop is stuck; a 60 s
# long-poll does not trip it.
timeout = 30
# On stop or reload a worker finishes the requests it has before it exits: long enough for
# the longest long-poll (60 s), so a deploy does not cut agents' waits short.
# deploy/countersign-web.service's TimeoutStopSec is longer still.
graceful_timeout = 65

# --- the proxy in front ----------------------------------------------------------------
# X-Forwarded-For/-Proto/-Host are trusted by the app alone, as COUNTERSIGN_TRUSTED_PROXIES
# says (werkzeug's ProxyFix, review/app_factory.py). gunicorn would otherwise take
# X-Forwarded-Proto from any local peer on its own, whatever that setting is.
secure_scheme_headers: dict[str, str] = {}

# --- control socket ---------------------------------------------------------------------
# gunicorn 25.1+ opens a control socket for `gunicornc`, by default at one path per user
# ($XDG_RUNTIME_DIR/gunicorn.ctl or ~/.gunicorn/gunicorn.ctl): a second instance on the
# host takes that path over, and stopping either removes the file the other is listening
# on. Each Countersign instance keeps its own beside its other state, in its instance
# folder (COUNTERSIGN_INSTANCE_DIR): `gunicornc -s $COUNTERSIGN_INSTANCE_DIR/gunicorn.ctl`.
control_socket = str(
    Path(os.environ.get("COUNTERSIGN_INSTANCE_DIR") or default_instance_dir()).resolve()
    / "gunicorn.ctl"
)

# --- logs -----------------------------------------------------------------------------
# The access log on stdout (the journal, under systemd), one line a request, with the
# request id the app gave the response (X-Request-ID: the client's own, or a new ULID), so
# an access line and the app's log lines for the same request can be matched. %(h)s is
# the peer (the proxy, behind one); the forwarded address is the proxy's X-Forwarded-For.
accesslog = "-"
access_log_format = (
    '%(h)s forwarded_for="%({x-forwarded-for}i)s" %(t)s "%(r)s" %(s)s %(b)s %(M)sms '
    'request_id=%({x-request-id}o)s "%(a)s"'
)
errorlog = "-"
# COUNTERSIGN_LOG_FORMAT=json makes gunicorn's lines JSON too, in the app's shape, the access
# lines with method, path, status, duration_ms and request_id as fields.
if os.environ.get("COUNTERSIGN_LOG_FORMAT", "text").strip().lower() == "json":
    logger_class = "review.observability.gunicorn_json.JsonLogger"
proc_name = "countersign-web"

# --- metrics ------------------------------------------------------------------------------
# With PROMETHEUS_MULTIPROC_DIR set, every worker writes its metrics into files there and
# /metrics adds them up (docs/METRICS.md). At start, the files of processes that are gone
# are removed; when a worker exits, its share of the long-polls-in-flight gauge is.
on_starting = metric_files.on_starting
child_exit = metric_files.child_exit
