"""The WSGI app: `gunicorn --config python:review.gunicorn_conf review.wsgi:app`.

Built at import, once per gunicorn worker, from the environment (review/settings.py).
"""

import gc
import sys

from review.app_factory import create_app
from review.settings import SettingsError

try:
    app = create_app()
except SettingsError as exc:  # a wrong setting stops start-up with its name, not a traceback
    sys.exit(f"countersign: bad setting: {exc}")

# The reviewer pages' templates compiled now, not by the first requests that need them:
# after a start, reviewers open their batches at once, and a worker's threads each
# compiled the same templates (a miss in Jinja's cache takes no lock), about 0.13 s of
# CPU a thread for the batch page's 18 (tests/test_wsgi_startup.py; docs/REVIEWING.md).
# The other pages (admin, audit) are opened one at a time and compile on first use, as
# before: all 54 would double what this adds to every start, CLI commands included.
WARM_TEMPLATES = ("base.html", "review/")
for name in app.jinja_env.list_templates(filter_func=lambda n: n.startswith(WARM_TEMPLATES)):
    app.jinja_env.get_template(name)

# What start-up built (modules, the app, its policy, SQLAlchemy's compiled statements)
# lives as long as the process. Frozen, it leaves the collector's generations, so a full
# collection walks only what requests made: a gen-2 pass over it all stalled the request
# that triggered it by 40-190 ms (docs/SCALING.md, "Where a request's time goes").
gc.collect()
gc.freeze()

# A worker's threads share one GIL. SQLite releases it in every call, and the thread that
# holds SQLite's writer lock (review/db.py WriterLock) then waits for a thread running
# Python (rendering a page) to let go of it: up to the switch interval, Python's 5 ms, per
# statement, while every other writer of every process waits on the lock. At 0.5 ms the
# lock's holder is back sooner (bench/writer_lock.py --kind decision --busy-threads 3:
# the hold's wall p50 78 -> 20 ms under load 13; docs/REVIEWING.md). The cost: a CPU-bound
# thread is asked to hand over more often, a few microseconds each time.
SWITCH_INTERVAL_SECONDS = 0.0005
sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
