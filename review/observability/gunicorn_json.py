"""gunicorn's own log lines as JSON when COUNTERSIGN_LOG_FORMAT=json (PROTOCOL.md section 15).

The app's lines are JSON already (review/web/request_ids.py); gunicorn writes its access
log and its error log itself, in text. This logger class, which review/gunicorn_conf.py
names when the format is json, makes both one JSON object a line in the same shape (time,
level, logger, message), the access lines with the request's fields beside it: method,
path, status, bytes, duration_ms, remote_addr, forwarded_for, user_agent and the
request_id the app gave the response, so a log pipeline parses every line alike.
"""

from __future__ import annotations

import json
import logging
import traceback
from datetime import UTC, datetime

from gunicorn import glogging

from review.web.request_ids import JsonFormatter


class JsonLogger(glogging.Logger):
    def setup(self, cfg) -> None:
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(JsonFormatter())
        for handler in self.access_log.handlers:
            handler.setFormatter(logging.Formatter("%(message)s"))  # access() writes JSON

    def access(self, resp, req, environ, request_time) -> None:
        if not self.access_log_enabled:
            return
        atoms = self.atoms(resp, req, environ, request_time)
        try:
            self.access_log.info(json.dumps(access_line(atoms), ensure_ascii=False))
        except Exception:
            self.error(traceback.format_exc())


def access_line(atoms: dict) -> dict:
    """One request, from gunicorn's log atoms (headers as `{name}i` / `{name}o`)."""
    status = atoms["s"]
    line = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "level": "INFO",
        "logger": "gunicorn.access",
        "message": f"{atoms['m']} {atoms['U']} {status}",
        "method": atoms["m"],
        "path": atoms["U"],
        "query": atoms["q"] or None,
        "status": int(status) if str(status).isdigit() else status,
        "bytes": atoms["B"],
        "duration_ms": atoms["M"],
        "remote_addr": atoms["h"],
        "forwarded_for": atoms.get("{x-forwarded-for}i"),
        "user_agent": atoms.get("{user-agent}i"),
    }
    request_id = atoms.get("{x-request-id}o")
    if request_id:
        line["request_id"] = request_id
    return line
