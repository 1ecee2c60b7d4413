"""Countersign: `flask --app app <command>` and `gunicorn app:app` both load this."""

import sys

from review.app_factory import create_app
from review.settings import SettingsError

try:
    app = create_app()
except SettingsError as exc:  # a wrong setting stops start-up with its name, not a traceback
    sys.exit(f"countersign: bad setting: {exc}")
