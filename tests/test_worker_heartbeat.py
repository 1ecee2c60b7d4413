"""The worker's heartbeat (issue 18 item 2): each worker writes it every maintenance tick;
/readyz reports the worker fresh, stale or missing (always 200 for it: PROTOCOL.md
section 15 makes only the database a reason to be unready), and /metrics shows its age."""

import time

from approval_queue.maintenance import TICK_SECONDS, start_maintenance
from approval_queue.worker import run_worker
from review.observability import heartbeat
from tests.helpers import wait_for
from tests.metrics_support import parse_metrics, value


def readiness(client) -> dict:
    response = client.get("/readyz")
    assert response.status_code == 200
    return response.get_json()


def test_a_worker_run_writes_a_heartbeat_that_readyz_reports_fresh(app, svc, client):
    assert readiness(client)["checks"]["worker"] == "missing"
    with app.app_context():
        run_worker(svc, burst=True)
    body = readiness(client)
    assert body["checks"]["worker"] == "ok"
    assert 0 <= body["worker_heartbeat_age_seconds"] < 5


def test_the_maintenance_ticker_beats_every_tick(app, svc, redis_client):
    ticker = start_maintenance(svc)
    try:
        wait_for(lambda: redis_client.zcard("countersign:worker:heartbeats") == 1, timeout=5)
        [(name, first)] = redis_client.zrange(
            "countersign:worker:heartbeats", 0, -1, withscores=True
        )
        assert name.decode() == heartbeat.worker_name()
        wait_for(
            lambda: redis_client.zscore("countersign:worker:heartbeats", name) > first,
            timeout=TICK_SECONDS + 3,
        )
    finally:
        ticker.stop()
        ticker.join(timeout=TICK_SECONDS + 5)


def test_readyz_reports_a_stale_heartbeat_and_stays_ready(make_app, redis_client):
    client = make_app(worker_stale_after=30).test_client()
    heartbeat.beat(redis_client, "old-host:41", now=time.time() - 45)
    body = readiness(client)
    assert body["status"] == "ok"
    assert body["checks"] == {"database": "ok", "redis": "ok", "worker": "stale"}
    assert 44 <= body["worker_heartbeat_age_seconds"] < 50
    samples = parse_metrics(client.get("/metrics").get_data(as_text=True))
    assert value(samples, "countersign_workers_fresh") == 0
    assert 44 <= value(samples, "countersign_worker_heartbeat_age_seconds") < 50
    heartbeat.beat(redis_client, "new-host:42")  # another worker beats: the newest counts
    assert readiness(client)["checks"]["worker"] == "ok"
    samples = parse_metrics(client.get("/metrics").get_data(as_text=True))
    assert value(samples, "countersign_workers_fresh") == 1


def test_workers_silent_for_a_day_are_forgotten(redis_client):
    now = time.time()
    heartbeat.beat(redis_client, "gone:1", now=now - heartbeat.FORGET_AFTER - 10)
    heartbeat.beat(redis_client, "here:2", now=now)
    assert redis_client.zrange("countersign:worker:heartbeats", 0, -1) == [b"here:2"]
