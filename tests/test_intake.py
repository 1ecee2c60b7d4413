"""A signed deferral lands scored, diffed, prioritised and audited (PROTOCOL.md 4.1 and 5)."""

import hashlib
import json
import threading
import time

import pytest
import rfc8785
from sqlalchemy import func, select, text

from review.audit.verify import verify_chain
from review.models import Deferral
from tests.helpers import audit_events, refund, wait_for


def test_a_deferral_is_created_as_the_protocol_resource(agent, svc):
    response = agent.defer()
    assert response.status_code == 202
    d = response.get_json()
    assert d["id"].startswith("dfr_") and len(d["id"]) == 30
    assert d["agent"] == "billing-bot" and d["status"] == "pending"
    assert d["action"] == refund()["action"]
    canonical = rfc8785.dumps(refund()["action"])
    assert d["action_digest"] == "sha256:" + hashlib.sha256(canonical).hexdigest()
    assert d["on_behalf_of"] == {
        "id": "alice@example.com",
        "display_name": "Alice",
        "verified": False,
        "issuer": None,
        "groups": [],
    }
    assert d["trace"] == {"id": "a1f8", "url": "https://traces.example.com/t/a1f8"}
    assert d["labels"] == {"team": "billing"}
    assert d["decision"] is None and d["execution"] is None
    risk = d["risk"]
    assert risk["score"] == 50 and risk["level"] == "high" and risk["agent_score"] == 40
    assert {"rule": "amount_over_500", "points": 30, "detail": "amount 740 > 500"} in risk[
        "factors"
    ]
    assert risk["policy_version"].startswith("sha256:")
    assert d["priority"] == 50
    assert d["created_at"].endswith("Z") and d["expires_at"].endswith("Z")
    assert d["diff"]["changes"] == [
        {"op": "changed", "path": "/status", "old": "paid", "new": "refunded"}
    ]


def test_expiry_defaults_to_a_day_and_follows_expires_in(agent):
    from datetime import datetime

    def span(d):
        fmt = "%Y-%m-%dT%H:%M:%SZ"
        return (
            datetime.strptime(d["expires_at"], fmt) - datetime.strptime(d["created_at"], fmt)
        ).total_seconds()

    assert span(agent.defer().get_json()) == 86400
    assert span(agent.defer(refund(expires_in=600)).get_json()) == 600


def test_reading_it_back_returns_the_same_resource(agent):
    created = agent.defer().get_json()
    read = agent.get(f"/api/v1/deferrals/{created['id']}")
    assert read.status_code == 200 and read.get_json() == created


def test_received_and_evaluated_are_audited_in_the_same_transaction(agent, svc):
    d = agent.defer().get_json()
    events = audit_events(svc, deferral_id=d["id"])
    assert [e.event_type for e in events] == ["deferral.received", "deferral.evaluated"]
    assert {e.actor_kind for e in events} == {"agent"}
    received = json.loads(events[0].payload)
    assert received["action_digest"] == d["action_digest"]
    assert received["on_behalf_of"]["id"] == "alice@example.com"
    assert received["state"]["after"] == {"invoice": "INV-1", "status": "refunded"}
    evaluated = json.loads(events[1].payload)
    assert evaluated["factors"] == d["risk"]["factors"]
    assert evaluated["policy_version"] == d["risk"]["policy_version"]
    with svc.db.read() as session:
        assert verify_chain(session).ok


def test_a_retry_with_the_same_webhook_id_and_body_answers_200_with_the_original(agent, svc):
    first = agent.defer(msg_id="msg_retry_1")
    again = agent.defer(msg_id="msg_retry_1")
    assert first.status_code == 202 and again.status_code == 200
    assert again.get_json() == first.get_json()
    with svc.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Deferral)) == 1


def test_the_same_json_with_other_whitespace_is_still_a_retry(agent):
    first = agent.defer(json.dumps(refund()).encode(), msg_id="m1")
    again = agent.defer(json.dumps(refund(), indent=2, sort_keys=True).encode(), msg_id="m1")
    assert (first.status_code, again.status_code) == (202, 200)


def test_the_same_webhook_id_with_a_different_body_answers_409(agent, svc):
    agent.defer(msg_id="msg_1")
    conflict = agent.defer(refund(summary="something else"), msg_id="msg_1")
    assert conflict.status_code == 409
    assert conflict.get_json()["error"]["code"] == "idempotency_conflict"
    with svc.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Deferral)) == 1


def test_webhook_ids_are_per_agent(make_agent):
    a, b = make_agent("agent-a"), make_agent("agent-b")
    assert a.defer(msg_id="same").status_code == 202
    assert b.defer(msg_id="same").status_code == 202


def test_racing_duplicates_create_one_deferral(app, agent, svc):
    body = json.dumps(refund()).encode()
    headers = agent.headers(body, msg_id="msg_race")
    headers["Content-Type"] = "application/json"
    statuses, barrier = [], threading.Barrier(8)

    def send():
        client = app.test_client()
        barrier.wait()
        path = f"/api/v1/agents/{agent.slug}/deferrals"
        statuses.append(client.post(path, data=body, headers=headers).status_code)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] * 7 + [202]
    with svc.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Deferral)) == 1
        assert verify_chain(session).ok


def test_the_rate_limit_is_shared_by_every_web_worker(make_app, agent):
    """Two app instances (as two gunicorn workers would be) count against one limit in Redis."""
    apps = [make_app(agent_rate=3), make_app(agent_rate=3)]
    clients = [agent.on(a) for a in apps]
    for _attempt in range(3):
        # Start at the beginning of a second, so that four requests fit into it.
        wait_for(lambda: time.time() % 1 <= 0.3, timeout=2, interval=0.01, message="a new second")
        second = int(time.time())
        codes = [clients[0].defer().status_code for _ in range(3)]
        last = clients[1].defer().status_code
        if int(time.time()) == second:
            assert codes == [202, 202, 202] and last == 429
            return
    raise AssertionError("could not fit four requests into one second")


def _eight_clients_at_once(app, agent, *, each: int) -> list[int]:
    """Eight clients of one agent start together and send `each` deferrals; the statuses."""
    barrier, statuses = threading.Barrier(8), []

    def send(i):
        client = agent.on(app)
        barrier.wait()
        for j in range(each):
            statuses.append(client.defer(refund(summary=f"refund {i}-{j}")).status_code)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


def test_concurrent_deferrals_of_one_agent_all_land_in_one_chain(make_app, agent, svc):
    """Eight clients at once: no deadlock, no lost event, one gapless chain."""
    statuses = _eight_clients_at_once(make_app(agent_rate=0), agent, each=5)
    assert statuses == [202] * 40
    with svc.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Deferral)) == 40
        result = verify_chain(session)
        assert result.ok and result.count == 2 + 80  # user and agent creation, then 2 each


def test_the_pending_cap_holds_exactly_under_concurrent_requests(make_app, agent, svc):
    """Read under the chain lock on both databases: eight clients cannot overshoot it."""
    app = make_app(agent_rate=0, agent_max_pending=5)
    statuses = _eight_clients_at_once(app, agent, each=2)
    assert sorted(statuses) == [202] * 5 + [429] * 11
    with svc.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Deferral)) == 5
        assert verify_chain(session).ok


def test_an_intake_waits_for_a_place_taken_meanwhile_and_writes_nothing(make_app, agent, svc):
    """PostgreSQL: the last place under the cap, taken by a transaction not yet committed
    (another intake's), is waited for and counted: the intake is refused whole (429, no
    deferral, no event)."""
    if svc.db.is_sqlite:
        pytest.skip("SQLite's intake reads the count under the writer lock")
    app = make_app(agent_rate=0, agent_max_pending=1)
    before = len(audit_events(svc))
    other = svc.db.engine.connect()  # another intake's place, not yet committed
    other.execute(text("UPDATE agents SET undecided = undecided + 1"))
    answers: list[int] = []
    sending = threading.Thread(target=lambda: answers.append(agent.on(app).defer().status_code))
    sending.start()
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    with svc.db.autocommit() as conn:  # each read its own transaction: a fresh snapshot
        wait_for(lambda: conn.execute(waiting).scalar() > 0, timeout=10, message="the row lock")
    other.commit()
    other.close()
    sending.join()
    assert answers == [429]
    assert [e.event_type for e in audit_events(svc)[before:]] == ["request.refused"]
    with svc.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Deferral)) == 0
        assert verify_chain(session).ok


def test_intake_goes_on_while_redis_is_down(make_app, make_agent, svc):
    """The rate limit and the flood breaker need Redis; a deferral does not wait for them."""
    registered = make_agent()
    down = make_app(redis_url="redis://127.0.0.1:1/0")
    agent = registered.on(down)
    response = agent.defer()
    assert response.status_code == 202, response.get_data(as_text=True)
    with svc.db.read() as session:
        assert session.get(Deferral, response.get_json()["id"]).status == "pending"
