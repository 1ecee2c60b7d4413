"""Countersign: `flask --app app <command>` and `gunicorn app:app` both load this.

The app itself is review/wsgi.py's (an installed copy has no app.py: it runs
`countersign <command>` and `gunicorn review.wsgi:app`).
"""

from review.wsgi import app  # noqa: F401
