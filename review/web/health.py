"""GET /healthz: 200 when the database and Redis answer, 503 otherwise."""

from __future__ import annotations

import logging

import redis
from flask import Blueprint, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from review.embedded_redis import EmbeddedRedisError
from review.services import current_services

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)


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
    try:
        svc.redis.client().ping()
        checks["redis"] = "ok"
    except (redis.RedisError, EmbeddedRedisError, OSError) as exc:
        log.warning("health: redis down: %s", exc)
        checks["redis"] = "down"
    return checks


@bp.get("/healthz")
def healthz():
    checks = check()
    if all(v == "ok" for v in checks.values()):
        return jsonify({"status": "ok"})
    return jsonify({"status": "unavailable", "checks": checks}), 503
