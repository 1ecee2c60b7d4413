"""Request ids, and log lines that carry them (PROTOCOL.md section 15).

An incoming `X-Request-ID` (printable ASCII, at most 200 characters) is kept, else one
is made (a ULID); either way the response echoes it. Every log line written while a
request is handled carries it as `request_id`; with COUNTERSIGN_LOG_FORMAT=json each
line is one JSON object.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from flask import Flask, Response, g, has_request_context, request

from review.ids import ulid

HEADER = "X-Request-ID"
_LOWER = HEADER.lower()
ENVIRON_KEY = "HTTP_X_REQUEST_ID"  # where WSGI puts it
MAX_LENGTH = 200
HANDLER_NAME = "countersign"  # the root handler the app set up (and may reformat)


def init_app(app: Flask) -> None:
    app.before_request(_take_request_id)
    app.after_request(_echo_request_id)


def is_acceptable(value: str) -> bool:
    return 0 < len(value) <= MAX_LENGTH and value.isascii() and value.isprintable()


def current_request_id() -> str | None:
    return g.get("request_id") if has_request_context() else None


def _take_request_id() -> None:
    incoming = request.environ.get(ENVIRON_KEY, "")  # request.headers.get, less its lookups
    g.request_id = incoming if is_acceptable(incoming) else ulid()


def _echo_request_id(response: Response) -> Response:
    request_id = g.get("request_id")  # an after-request hook: always in a request
    if not request_id:
        return response
    # Unless the view named its own (the AAP door names its exchanges). Looked for by
    # hand: werkzeug's `in` raises and catches a KeyError when the name is absent.
    for name, _value in response.headers:
        if name.lower() == _LOWER:
            return response
    response.headers.add(HEADER, request_id)
    return response


class RequestIdFilter(logging.Filter):
    """Gives each record a `request_id` (None outside a request); never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, request_id (in a request)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            line["request_id"] = request_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_handler(handler: logging.Handler, log_format: str) -> None:
    """Make `handler` write the app's format, with request ids."""
    if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
        handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else _TextFormatter(TEXT_FORMAT))


class _TextFormatter(logging.Formatter):
    """The text format, with ` [request_id]` after the message when in a request."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", None)
        return f"{line} [request_id={request_id}]" if request_id else line
