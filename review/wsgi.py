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
