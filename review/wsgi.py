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
