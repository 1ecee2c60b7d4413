"""Health: /healthz (v1), /livez (the process answers) and /readyz (ready for traffic).

- GET /healthz: 200 when the database and Redis answer, 503 otherwise (v1).
- GET /livez: 200 whenever the process can answer; touches neither database nor Redis.
- GET /readyz: 200 when the database answers and is migrated to the newest revision;
  503 naming what is wrong otherwise. Redis down is reported as "degraded" and still
  200 (PROTOCOL.md section 15). The database's answer is kept for READINESS_TTL seconds
  so that a prober polling every second costs one query every few seconds. The worker's
  heartbeat (review/observability/heartbeat.py) is reported too, in the same Redis round
  trip that tells whether Redis answers: "ok", "stale" (older than
  COUNTERSIGN_WORKER_STALE_AFTER), "missing" (no worker has ever beaten) or "unknown"
  (Redis down). A stale worker delays expiry and callbacks but loses nothing, so it
  never makes the web process unready: still 200.
"""

from __future__ import annotations

import logging
import threading
import time

import redis
from flask import Blueprint, current_app, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from review import migrate
from review.embedded_redis import EmbeddedRedisError
from review.observability import heartbeat
from review.services import current_services

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)
READINESS_TTL = 3.0  # seconds


def check() -> dict[str, str]:
    svc = current_services()
    checks = {}
    try:
        with svc.db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except SQLAlchemyError as exc:
        log.warning("health: database down: %s", exc)
        checks["database"] = "down"
    checks["redis"] = "ok" if _redis_answers() else "down"
    return checks


@bp.get("/healthz")
def healthz():
    checks = check()
    if all(v == "ok" for v in checks.values()):
        return jsonify({"status": "ok"})
    return jsonify({"status": "unavailable", "checks": checks}), 503


@bp.get("/livez")
def livez():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    database, problem = _database_readiness()
    beats = _heartbeats()
    body: dict = {"status": "ok" if problem is None else "unavailable"}
    body["checks"] = {
        "database": database,
        "redis": "ok" if beats is not None else "degraded",
        "worker": beats.state if beats is not None else "unknown",
    }
    if beats is not None and beats.age is not None:
        body["worker_heartbeat_age_seconds"] = round(beats.age, 1)
    if problem is not None:
        body["problem"] = problem
        return jsonify(body), 503
    return jsonify(body)


class _ReadinessMemo:
    """The database's last answer, per app, for READINESS_TTL seconds."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.until = 0.0
        self.answer: tuple[str, str | None] = ("down", "not checked yet")


def _database_readiness() -> tuple[str, str | None]:
    """("ok", None), or (state, a sentence naming what is wrong)."""
    memo = current_app.extensions.setdefault("countersign_readiness", _ReadinessMemo())
    with memo.lock:
        if time.monotonic() < memo.until:
            return memo.answer
        memo.answer = _ask_database()
        memo.until = time.monotonic() + READINESS_TTL
        return memo.answer


def _ask_database() -> tuple[str, str | None]:
    try:
        current = migrate.current_revision(current_services().db)
    except SQLAlchemyError as exc:
        log.warning("readiness: database down: %s", exc)
        return "down", "the database does not answer"
    head = migrate.head_revision()
    if current is None:
        return "not_migrated", f"the database has no schema; run `db upgrade` (head is {head})"
    if current != head:
        return (
            "not_migrated",
            f"the database is at revision {current}, not at head {head}; run `db upgrade`",
        )
    return "ok", None


def _heartbeats() -> heartbeat.Heartbeats | None:
    """The workers' heartbeats; None when Redis does not answer."""
    svc = current_services()
    try:
        return heartbeat.read(svc.redis.client(), svc.settings.worker_stale_after)
    except (redis.RedisError, EmbeddedRedisError, OSError) as exc:
        log.warning("readiness: redis down: %s", exc)
        return None


def _redis_answers() -> bool:
    try:
        current_services().redis.client().ping()
    except (redis.RedisError, EmbeddedRedisError, OSError) as exc:
        log.warning("health: redis down: %s", exc)
        return False
    return True
