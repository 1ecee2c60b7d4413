"""Run it like a service (issue 18; PROTOCOL.md section 15): /livez and /readyz, request
ids and JSON log lines, `db current|history`, and Alembic's own commands."""

import io
import json
import logging
import os
import subprocess
import sys

import pytest

from review import migrate
from review.db import Database
from review.settings import PROJECT_ROOT
from review.web.request_ids import HANDLER_NAME

CLOSED_REDIS = "redis://127.0.0.1:1/0"


# --- /livez and /readyz ------------------------------------------------------------------


def test_readyz_answers_200_on_a_migrated_database(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {  # no worker has run against this Redis
        "status": "ok",
        "checks": {"database": "ok", "redis": "ok", "worker": "missing"},
    }


def test_readyz_answers_503_on_a_database_one_migration_behind(make_app, empty_database_url):
    history = [revision for revision, _ in migrate.history()]
    db = Database(empty_database_url)
    migrate.upgrade(db, history[-2])
    db.dispose()
    response = make_app(database_url=empty_database_url).test_client().get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "not_migrated"
    assert history[-2] in body["problem"] and history[-1] in body["problem"]


def test_readyz_answers_503_on_a_database_with_no_schema(make_app, empty_database_url):
    response = make_app(database_url=empty_database_url).test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["database"] == "not_migrated"
    assert "no schema" in response.get_json()["problem"]


def test_readyz_reports_redis_down_as_degraded_and_stays_ready(make_app):
    response = make_app(redis_url=CLOSED_REDIS).test_client().get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ok",
        "checks": {"database": "ok", "redis": "degraded", "worker": "unknown"},
    }


def test_livez_answers_without_the_database_or_redis(make_app, tmp_path):
    unreachable = "postgresql+psycopg://nobody@127.0.0.1:1/nothing?connect_timeout=1"
    client = make_app(database_url=unreachable, redis_url=CLOSED_REDIS).test_client()
    live = client.get("/livez")
    assert live.status_code == 200 and live.get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["checks"] == {
        "database": "down",
        "redis": "degraded",
        "worker": "unknown",
    }


def test_healthz_is_unchanged_by_readiness(make_app):
    response = make_app(redis_url=CLOSED_REDIS).test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["checks"] == {"database": "ok", "redis": "down"}


# --- request ids and JSON logs -----------------------------------------------------------


def test_it_keeps_and_echoes_an_incoming_request_id(client):
    response = client.get("/livez", headers={"X-Request-ID": "edge-7f3a 42"})
    assert response.headers["X-Request-ID"] == "edge-7f3a 42"


@pytest.mark.parametrize("incoming", [None, "", "x" * 201, "tab\there", "caf\u00e9"])
def test_it_makes_a_request_id_when_none_acceptable_came(client, incoming):
    headers = {} if incoming is None else {"X-Request-ID": incoming}
    made = client.get("/livez", headers=headers).headers["X-Request-ID"]
    assert made != incoming and len(made) == 26 and made.isalnum()
    assert client.get("/livez").headers["X-Request-ID"] != made  # one per request


@pytest.fixture
def json_log_lines():
    """The app's own root handler (as create_app makes it), writing into a buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.set_name(HANDLER_NAME)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)


def test_json_log_lines_carry_the_request_id(make_app, json_log_lines):
    client = make_app(redis_url=CLOSED_REDIS, log_format="json").test_client()
    response = client.get("/healthz", headers={"X-Request-ID": "req-json-1"})
    assert response.status_code == 503  # Redis is down, and the app logs that it is
    lines = [line for line in json_log_lines() if line["logger"] == "review.web.health"]
    assert lines, "the health check logged nothing"
    line = lines[0]
    assert {"time", "level", "logger", "message", "request_id"} <= set(line)
    assert line["request_id"] == "req-json-1"
    assert line["level"] == "WARNING" and "redis down" in line["message"]
    outside = logging.getLogger("review.test")
    outside.warning("not in a request")
    last = json_log_lines()[-1]
    assert last["message"] == "not in a request" and "request_id" not in last


# --- db current / history, and alembic.ini -----------------------------------------------


def test_db_current_and_history_name_the_revisions(runner):
    head = migrate.head_revision()
    current = runner.invoke(args=["db", "current"])
    assert current.exit_code == 0 and current.output.strip() == f"{head} (head)"
    history = runner.invoke(args=["db", "history"]).output.splitlines()
    assert history[0].startswith("0001 ")
    assert history[-1].startswith(f"{head} ") and history[-1].endswith("<- current")
    assert len(history) == len(migrate.history())


def test_db_current_says_when_the_database_is_behind(make_app, empty_database_url):
    history = [revision for revision, _ in migrate.history()]
    db = Database(empty_database_url)
    migrate.upgrade(db, history[-2])
    db.dispose()
    runner = make_app(database_url=empty_database_url).test_cli_runner()
    output = runner.invoke(args=["db", "current"]).output.strip()
    assert output == f"{history[-2]} (head is {history[-1]}; run `db upgrade`)"


def test_alembic_current_reads_database_url_like_the_app(database_url):
    env = {**os.environ, "DATABASE_URL": database_url}
    alembic = os.path.join(os.path.dirname(sys.executable), "alembic")
    result = subprocess.run(
        [alembic, "-c", "alembic.ini", "current"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"{migrate.head_revision()} (head)" in result.stdout
