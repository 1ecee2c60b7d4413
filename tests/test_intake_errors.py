"""Every row of PROTOCOL.md section 3, answered exactly, audited, and leaving nothing behind."""

import json
import threading
import time

import pytest
from sqlalchemy import delete, func, select, text, update

from review.agents.killswitch import Actor, kill
from review.agents.registry import signers
from review.audit.chain import chained_write
from review.audit.verify import verify_chain
from review.intake.deferrals import create_deferral
from review.intake.preparation import prepare
from review.models import PENDING_STATUSES, Agent, AuditEvent, Deferral
from tests.helpers import count_rows, refund, wait_for
from tests.prepared_races import drop_every_connection


def _last_refusal(svc):
    with svc.db.read() as session:
        event = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.event_type == "request.refused")
            .order_by(AuditEvent.seq.desc())
        ).first()
        assert verify_chain(session).ok
    return json.loads(event.payload) if event else None


def _assert_refused(response, svc, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert count_rows(svc, Deferral) == 0
    refusal = _last_refusal(svc)
    assert refusal is not None and refusal["code"] == code and refusal["status"] == status
    return body


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"",
        b'{"summary": "caf\xe9"}',  # latin-1, not UTF-8
        b'{"summary": NaN}',
        b'{"risk": {"score": Infinity}}',
        b'{"x": -Infinity}',
        b'{"a": "\\ud800"}',  # a lone surrogate is not text
        b"[" * 33 + b"]" * 33,
        b"[" * 5000 + b"]" * 5000,
    ],
)
def test_bodies_that_are_not_strict_utf8_json_answer_400_malformed_json(agent, svc, raw):
    _assert_refused(agent.defer(raw), svc, 400, "malformed_json")


def test_nesting_up_to_the_limit_is_fine_and_one_deeper_is_not(agent, svc):
    ok = refund(before={"a": json.loads("[" * 30 + "]" * 30)})  # body depth 32
    assert agent.defer(ok).status_code == 202
    deep = refund(before={"a": json.loads("[" * 31 + "]" * 31)})  # body depth 33
    response = agent.defer(deep)
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "malformed_json"


def test_a_body_over_the_limit_answers_413(make_app, make_agent):
    app = make_app(max_body_bytes=2048)
    svc = app.extensions["countersign"]
    agent = make_agent().on(app)
    response = agent.defer(refund(rationale="x" * 3000))
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"
    assert count_rows(svc, Deferral) == 0


def test_the_default_limit_is_one_mebibyte(agent, svc):
    big = refund(before={"blob": "x" * (1024 * 1024)})
    response = agent.defer(big)
    assert response.status_code == 413


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"],
)
def test_a_body_that_is_not_application_json_answers_415(agent, svc, content_type):
    response = agent.defer(content_type=content_type)
    _assert_refused(response, svc, 415, "unsupported_media_type")


def test_json_with_a_utf8_charset_is_accepted(agent):
    assert agent.defer(content_type="application/json; charset=utf-8").status_code == 202


@pytest.mark.parametrize(
    "body,pointer,message",
    [
        ({k: v for k, v in refund().items() if k != "summary"}, "/summary", "required"),
        (refund(action={"args": {}}), "/action/tool", "required"),
        (refund(action={"tool": "x", "args": []}), "/action/args", "must be an object"),
        (refund(action={"tool": "", "args": {}}), "/action/tool", "must not be empty"),
        (refund(summary="x" * 501), "/summary", "must be at most 500 characters"),
        (refund(on_behalf_of={}), "/on_behalf_of/id", "required"),
        (refund(colour="blue"), "/colour", "unknown field"),
        (
            refund(trace={"url": "javascript:alert(1)"}),
            "/trace/url",
            "an absolute http:// or https:// URL",
        ),
        (
            refund(trace={"url": "ftp://traces.example.com/x"}),
            "/trace/url",
            "an absolute http:// or https:// URL",
        ),
        (refund(expires_in=59), "/expires_in", "must be at least 60"),
        (refund(expires_in=604801), "/expires_in", "must be at most 604800"),
        (refund(risk={"score": 101}), "/risk/score", "must be at most 100"),
        (refund(risk={"score": "high"}), "/risk/score", "must be an integer"),
        (refund(labels={f"k{i}": "v" for i in range(21)}), "/labels", "must have at most 20"),
        (refund(labels={"env": 1}), "/labels/env", "must be a string"),
        (refund(resource={"type": "invoice"}), "/resource/id", "required"),
        (refund(rationale="x" * 10001), "/rationale", "must be at most 10000 characters"),
        (refund(before={"n": 2**60}), "/before/n", "number outside"),
        (refund(summary="nul \u0000 byte"), "/summary", "NUL"),
        ([refund()], "", "must be an object"),
        ("a string", "", "must be an object"),
    ],
)
def test_schema_violations_answer_422_with_json_pointers(agent, svc, body, pointer, message):
    body = _assert_refused(agent.defer(body), svc, 422, "invalid_request")
    details = body["error"]["details"]
    assert any(d["path"] == pointer and message in d["message"] for d in details), details


def test_every_failing_field_is_listed(agent, svc):
    body = refund(summary="", colour="x", expires_in=1)
    del body["action"]
    details = _assert_refused(agent.defer(body), svc, 422, "invalid_request")["error"]["details"]
    assert {d["path"] for d in details} == {"/action", "/colour", "/expires_in", "/summary"}


def test_a_killed_agent_answers_423(agent, svc):
    with svc.db.write() as session:
        session.execute(update(Agent).values(state="killed", state_reason="runaway loop"))
    body = _assert_refused(agent.defer(), svc, 423, "agent_killed")
    assert "runaway loop" in body["error"]["message"]


def test_over_the_request_rate_answers_429_with_retry_after(make_app, make_agent):
    app = make_app(agent_rate=3)
    svc = app.extensions["countersign"]
    agent = make_agent().on(app)
    statuses = [agent.defer().status_code for _ in range(8)]
    assert 202 in statuses and 429 in statuses
    assert statuses.count(202) <= 6  # at most the rate in each of two one-second windows
    response = agent.defer()
    if response.status_code == 429:
        assert response.headers["Retry-After"] == "1"
        assert response.get_json()["error"]["code"] == "rate_limited"
    assert _last_refusal(svc)["code"] == "rate_limited"


def test_over_the_pending_cap_answers_429_with_retry_after(make_app, make_agent):
    app = make_app(agent_max_pending=2)
    svc = app.extensions["countersign"]
    agent = make_agent().on(app)
    assert [agent.defer().status_code for _ in range(2)] == [202, 202]
    response = agent.defer()
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 0
    assert response.get_json()["error"]["code"] == "rate_limited"
    assert _last_refusal(svc)["code"] == "rate_limited"
    with svc.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Deferral)) == 2


def test_a_decided_deferral_frees_its_place_under_the_pending_cap(make_app, make_agent):
    app = make_app(agent_max_pending=1)
    agent = make_agent().on(app)
    first = agent.defer().get_json()
    assert agent.defer().status_code == 429
    agent.post_json(f"/api/v1/deferrals/{first['id']}/cancel", {"reason": "not needed"})
    assert agent.defer().status_code == 202


def test_the_agents_undecided_count_follows_every_status_change(agent, svc):
    """agents.undecided is kept by triggers (migration 0007); it must equal a real count."""
    ids = [agent.defer().get_json()["id"] for _ in range(5)]

    def kept_and_counted():
        with svc.db.read() as session:
            kept = session.scalar(select(Agent.undecided).where(Agent.slug == agent.slug))
            counted = session.scalar(
                select(func.count())
                .select_from(Deferral)
                .where(Deferral.status.in_(PENDING_STATUSES))
            )
            return kept, counted

    def set_status(deferral_id, status):
        with svc.db.write() as session:
            session.execute(
                update(Deferral).where(Deferral.id == deferral_id).values(status=status)
            )

    assert kept_and_counted() == (5, 5)
    for deferral_id, status, expected in [
        (ids[0], "in_review", 5),  # claimed: still undecided
        (ids[0], "pending", 5),  # its lease lapsed
        (ids[0], "approved", 4),
        (ids[0], "approved", 4),  # terminal to terminal: no change
        (ids[1], "in_review", 4),
        (ids[1], "rejected", 3),
        (ids[2], "expired", 2),
    ]:
        set_status(deferral_id, status)
        assert kept_and_counted() == (expected, expected), (deferral_id, status)
    with svc.db.write() as session:
        session.execute(delete(Deferral).where(Deferral.id == ids[3]))
    assert kept_and_counted() == (1, 1)
    kill(svc, agent.slug, Actor("user", "owner"), "runaway")
    assert kept_and_counted() == (0, 0)


def test_cancelling_twice_answers_409_invalid_state(agent, svc):
    deferral = agent.defer().get_json()
    path = f"/api/v1/deferrals/{deferral['id']}/cancel"
    assert agent.post_json(path, {"reason": "changed my mind"}).status_code == 200
    again = agent.post_json(path, {"reason": "again"})
    assert again.status_code == 409
    assert again.get_json()["error"]["code"] == "invalid_state"
    assert _last_refusal(svc)["code"] == "invalid_state"


def test_unknown_api_paths_and_methods_answer_json(agent, client):
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"
    wrong = client.delete(f"/api/v1/agents/{agent.slug}/deferrals")
    assert wrong.status_code == 405 and wrong.get_json()["error"]["code"] == "method_not_allowed"


def test_a_kill_committed_while_intake_waits_for_the_chain_lock_is_seen(agent, svc):
    """The agent was active when the request was authenticated, killed before it wrote."""
    flipped, failures = threading.Event(), []

    def kill_and_hold_the_lock_until_intake_waits_for_it():
        try:
            with chained_write(svc.db) as session:
                session.execute(
                    update(Agent).values(state="killed", state_reason="flipped meanwhile")
                )
                flipped.set()
                wait_until_a_writer_waits_for_the_lock(svc)  # then this commit lets it in
        except AssertionError as failure:
            failures.append(failure)

    killer = threading.Thread(target=kill_and_hold_the_lock_until_intake_waits_for_it)
    killer.start()
    flipped.wait(5)
    response = agent.defer()
    killer.join()
    assert not failures, failures
    body = _assert_refused(response, svc, 423, "agent_killed")
    assert "flipped meanwhile" in body["error"]["message"]


def wait_until_a_writer_waits_for_the_lock(svc) -> None:
    """Return once another transaction waits for a lock this one holds."""
    if svc.db.is_sqlite:
        # A sleep, not a wait: SQLite's writers queue on a lock inside this process (see
        # review.db.WriterLock) that nothing shows a waiter on. The request reaches it in
        # milliseconds; 0.3 s is ample.
        time.sleep(0.3)
        return
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    with svc.db.autocommit() as conn:  # each read its own transaction: a fresh snapshot
        wait_for(
            lambda: conn.execute(waiting).scalar() > 0,
            timeout=10,
            message="the request to wait for the chain lock",
        )


def test_an_intake_on_a_connection_the_server_dropped_is_stored_once(agent, svc):
    """Intake takes its connection without the pool's ping (review/db.py): when the
    server has dropped the pooled ones (a restart, a failover), the call runs again on
    a pinged connection; every other path still pings."""
    if svc.db.is_sqlite:
        pytest.skip("SQLite has no server to drop a connection")
    assert agent.defer(refund(summary="before")).status_code == 202
    with svc.db.read() as session:
        signer = signers(session, slug=agent.slug)[0]
    prepared = prepare(svc, refund(summary="after"))
    drop_every_connection(svc.db.url)
    received = create_deferral(svc, signer, "msg_after_the_drop", prepared)
    assert received.created
    drop_every_connection(svc.db.url)
    assert count_rows(svc, Deferral) == 2  # a read: pinged, so it finds a live connection
    with svc.db.read() as session:
        assert verify_chain(session).ok
