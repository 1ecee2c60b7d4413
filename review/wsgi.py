"""The WSGI app: `gunicorn --config python:review.gunicorn_conf review.wsgi:app`.

Built at import, once per gunicorn worker, from the environment (review/settings.py).
"""

import sys

from review.app_factory import create_app
from review.settings import SettingsError

try:
    app = create_app()
except SettingsError as exc:  # a wrong setting stops start-up with its name, not a traceback
    sys.exit(f"countersign: bad setting: {exc}")
