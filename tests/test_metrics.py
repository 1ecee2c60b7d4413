"""GET /metrics in one process (docs/METRICS.md; issue 18 item 2, PROTOCOL.md section 15):
the names, the scrape-time gauges, what each kind of event counts, who may read it, and
that it answers when the database or Redis does not. Under several gunicorn workers and
the rq worker: tests/test_metrics_processes.py."""

from datetime import timedelta

import pytest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from sqlalchemy import update

from review.agents.killswitch import Actor, kill
from review.models import Deferral, utcnow
from review.reviewing.expiry import expire_due
from tests.client_support import decide_now
from tests.helpers import refund, reviewer
from tests.metrics_support import family_names, parse_metrics, value

CLOSED_REDIS = "redis://127.0.0.1:1/0"


def scrape(client, **kwargs) -> dict:
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.get_data(as_text=True)
    return parse_metrics(response.get_data(as_text=True))


def test_it_serves_prometheus_text_whose_names_start_with_countersign(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == CONTENT_TYPE_PLAIN_0_0_4
    names = family_names(response.get_data(as_text=True))
    assert names and all(name.startswith("countersign_") for name in names), names
    for expected in (
        "countersign_deferrals_pending",
        "countersign_deferrals_oldest_pending_age_seconds",
        "countersign_decisions",
        "countersign_decision_seconds",
        "countersign_outbox_depth",
        "countersign_outbox_dead_letters",
        "countersign_callback_attempts",
        "countersign_rq_queue_depth",
        "countersign_breaker_trips",
        "countersign_long_polls_in_flight",
        "countersign_intake_seconds",
        "countersign_workers_fresh",
        "countersign_scrape_source_up",
    ):
        assert expected in names


def test_pending_gauges_count_undecided_deferrals_by_status_and_level(app, svc, agent, client):
    ids = [agent.defer(refund(summary=f"refund {i}")).get_json()["id"] for i in range(3)]
    with svc.db.write() as session:  # the first one waited ten minutes
        session.execute(
            update(Deferral)
            .where(Deferral.id == ids[0])
            .values(created_at=utcnow() - timedelta(minutes=10))
        )
    holder = reviewer(svc)
    samples = scrape(client)
    level = agent.get(f"/api/v1/deferrals/{ids[0]}").get_json()["risk"]["level"]
    assert value(samples, "countersign_deferrals_pending", status="pending", level=level) == 3
    assert value(samples, "countersign_deferrals_pending", status="in_review", level=level) == 0
    assert 600 <= value(samples, "countersign_deferrals_oldest_pending_age_seconds") < 660
    decide_now(svc, holder, ids[0], "approve")
    samples = scrape(client)
    in_review = value(samples, "countersign_deferrals_pending", status="in_review", level=level)
    pending = value(samples, "countersign_deferrals_pending", status="pending", level=level)
    assert (pending, in_review) == (0, 2)  # the batch holds the other two
    assert value(samples, "countersign_deferrals_oldest_pending_age_seconds") < 60


def test_decisions_count_by_outcome_and_by_whom_with_their_time(svc, agent, client):
    before = scrape(client)
    ids = [agent.defer(refund(summary=f"refund {i}")).get_json()["id"] for i in range(5)]
    holder = reviewer(svc)
    decide_now(svc, holder, ids[0], "approve")
    decide_now(svc, holder, ids[1], "reject", "not today")
    agent.post_json(f"/api/v1/deferrals/{ids[2]}/cancel", {"reason": "not needed"})
    with svc.db.write() as session:
        session.execute(update(Deferral).where(Deferral.id == ids[3]).values(expires_at=utcnow()))
    assert expire_due(svc) == 1
    kill(svc, agent.slug, Actor("user", "olivia"), "runaway")  # ends ids[4], and the
    after = scrape(client)  # two that were in rita's batch (already decided: not again)

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("countersign_decisions_total", outcome="approved", by="person") == 1
    assert grew("countersign_decisions_total", outcome="rejected", by="person") == 1
    assert grew("countersign_decisions_total", outcome="cancelled", by="agent") == 1
    assert grew("countersign_decisions_total", outcome="expired", by="system") == 1
    assert grew("countersign_decisions_total", outcome="killed", by="system") == 1
    assert grew("countersign_decision_seconds_count", outcome="approved", by="person") == 1
    assert (
        grew("countersign_decision_seconds_bucket", outcome="approved", by="person", le="60.0") == 1
    )


def test_a_rolled_back_decision_counts_nothing(svc, agent, client):
    before = scrape(client)
    d_id = agent.defer().get_json()["id"]
    from review.reviewing.ending import end_deferral

    with pytest.raises(RuntimeError), svc.db.write() as session:
        end_deferral(
            session,
            session.get(Deferral, d_id),
            "expired",
            actor=("system", "expiry"),
            reason="test",
            decided_by=[],
        )
        raise RuntimeError("the transaction fails after the ending")
    after = scrape(client)
    key = ("countersign_decisions_total", frozenset({"outcome": "expired", "by": "system"}.items()))
    assert after.get(key) == before.get(key)


def test_a_policy_decision_at_intake_counts_as_by_policy(make_app, make_agent, tmp_path):
    policy = tmp_path / "policy.toml"
    policy.write_text(
        '[[rule]]\nid = "reads"\nkind = "tool"\nmatch = ["*.get"]\npoints = 0\n'
        'outcome = "allow"\ndetail = "{tool} only reads"\n'
    )
    app = make_app(policy_file=str(policy))
    agent = make_agent().on(app)
    client = app.test_client()
    before = scrape(client)
    response = agent.defer(refund(action={"tool": "files.get", "args": {"path": "/a"}}))
    assert response.get_json()["status"] == "approved"
    after = scrape(client)
    labels = {"outcome": "approved", "by": "policy"}
    assert value(after, "countersign_decisions_total", **labels) == (
        value(before, "countersign_decisions_total", **labels) + 1
    )


def test_intake_latency_and_refusals_by_code_are_observed(agent, client):
    before = scrape(client)
    first = agent.defer(msg_id="msg_same")
    again = agent.defer(msg_id="msg_same")
    assert (first.status_code, again.status_code) == (202, 200)
    bad = client.post(
        f"/api/v1/agents/{agent.slug}/deferrals", data=b"{}", content_type="application/json"
    )
    assert bad.status_code == 401
    assert agent.defer(b"{not json").status_code == 400
    after = scrape(client)

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("countersign_intake_seconds_count", door="api", result="created") == 1
    assert grew("countersign_intake_seconds_count", door="api", result="replayed") == 1
    assert grew("countersign_intake_seconds_count", door="api", result="refused") == 2
    assert grew("countersign_refusals_total", door="api", code="unauthorized") == 1
    assert grew("countersign_refusals_total", door="api", code="malformed_json") == 1


def test_breaker_trips_are_counted_by_rule(callback_world, client):
    world = callback_world(breaker_flood="2/60")
    before = scrape(world.app.test_client())
    codes = [world.agent.defer(refund(summary=f"loop {i}")).status_code for i in range(4)]
    assert codes == [202, 202, 202, 423]
    after = scrape(world.app.test_client())
    assert value(after, "countersign_breaker_trips_total", rule="flood") == (
        value(before, "countersign_breaker_trips_total", rule="flood") + 1
    )


def test_outbox_depth_dead_letters_and_the_workers_callbacks(callback_world):
    # The receiver takes the first callback and answers 410 Gone (dead at once) after.
    world = callback_world((200, {}, 0), (410, {}, 0))
    client = world.app.test_client()
    before = scrape(client)
    world.agent.defer()
    kill(world.svc, world.agent.slug, Actor("user", "olivia"), "stop")
    waiting = scrape(client)
    assert value(waiting, "countersign_outbox_depth") == 2  # deferral.decided, agent.killed
    world.work_until(lambda: value(scrape(client), "countersign_outbox_depth") == 0)
    after = scrape(client)
    assert value(after, "countersign_outbox_dead_letters") == 1
    assert value(after, "countersign_outbox_oldest_due_seconds") == 0

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("countersign_callback_attempts_total", result="delivered") == 1
    assert grew("countersign_callback_attempts_total", result="dead") == 1
    assert grew("countersign_callback_attempt_seconds_count", result="dead") == 1
    assert grew("countersign_callback_delivery_seconds_count") == 1


def test_rq_queue_depth_and_the_worker_heartbeat_are_read_at_scrape_time(svc, client):
    from approval_queue import names
    from approval_queue.jobs import enqueue
    from review.observability import heartbeat

    client_redis = svc.redis.client()
    enqueue(client_redis, "approval_queue.delivery.flush", queue_name=names.DEFAULT)
    samples = scrape(client)
    assert value(samples, "countersign_rq_queue_depth", queue=names.DEFAULT) == 1
    assert value(samples, "countersign_workers_fresh") == 0
    assert ("countersign_worker_heartbeat_age_seconds", frozenset()) not in samples
    heartbeat.beat(client_redis, "host:1")
    samples = scrape(client)
    assert value(samples, "countersign_workers_fresh") == 1
    assert value(samples, "countersign_worker_heartbeat_age_seconds") < 5


# --- who may read it --------------------------------------------------------------------


def test_it_answers_loopback_and_refuses_other_addresses_without_a_token(client):
    assert client.get("/metrics").status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
    far = client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert far.status_code == 403
    assert "COUNTERSIGN_METRICS_TOKEN" in far.get_data(as_text=True)
    assert "countersign_" not in far.get_data(as_text=True)


def test_a_proxy_on_the_same_host_does_not_make_requests_loopback(client):
    proxied = client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert proxied.status_code == 403
    assert client.get("/metrics", headers={"Forwarded": "for=1.2.3.4"}).status_code == 403


def test_behind_proxyfix_the_connecting_address_decides(make_app):
    client = make_app(trusted_proxies=1).test_client()
    spoofed = client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"},
                         headers={"X-Forwarded-For": "127.0.0.1"})  # fmt: skip
    assert spoofed.status_code == 403


def test_a_bearer_token_opens_it_from_anywhere(make_app):
    client = make_app(metrics_token="s3cret-scrape-token").test_client()
    far = {"REMOTE_ADDR": "203.0.113.9"}
    ok = client.get(
        "/metrics", environ_base=far, headers={"Authorization": "Bearer s3cret-scrape-token"}
    )
    assert ok.status_code == 200 and b"countersign_" in ok.data
    wrong = client.get("/metrics", environ_base=far, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", environ_base=far).status_code == 401
    assert client.get("/metrics").status_code == 200  # loopback still may


# --- never a 500 ------------------------------------------------------------------------


def test_it_answers_200_when_redis_is_down_and_says_which_source_failed(make_app):
    samples = scrape(make_app(redis_url=CLOSED_REDIS).test_client())
    assert value(samples, "countersign_scrape_source_up", source="redis") == 0
    assert value(samples, "countersign_scrape_source_up", source="database") == 1
    assert value(samples, "countersign_scrape_source_up", source="processes") == 1
    assert (
        "countersign_rq_queue_depth",
        frozenset({"queue": "countersign-default"}.items()),
    ) not in samples


def test_it_answers_200_when_the_database_is_down(make_app):
    unreachable = "postgresql+psycopg://nobody@127.0.0.1:1/nothing?connect_timeout=1"
    samples = scrape(make_app(database_url=unreachable).test_client())
    assert value(samples, "countersign_scrape_source_up", source="database") == 0
    assert value(samples, "countersign_scrape_source_up", source="redis") == 1
    assert ("countersign_outbox_depth", frozenset()) not in samples
