"""The agent API under hostile input (Countersign issue 13): numbers beyond a double,
long-polls that would starve the web tier, refusal floods that would grow the audit log,
and execution reports retried after a lost answer."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from approval_queue.maintenance import tick
from review import redis_keys
from review.agents.executions import MAX_FULL_VIOLATIONS
from review.audit import repeats
from review.audit.chain import chained_write, record_event
from review.audit.verify import verify_chain
from review.models import AuditEvent, Deferral, Execution
from review.reviewing.ending import cancel_deferral
from review.signing import sign_headers
from tests.helpers import AgentClient, Browser, approved, csrf_token, free_port, refund, reviewer

ROOT = Path(__file__).resolve().parent.parent


def events(svc, event_type, deferral_id=None):
    with svc.db.read() as session:
        query = select(AuditEvent).where(AuditEvent.event_type == event_type)
        if deferral_id is not None:
            query = query.where(AuditEvent.deferral_id == deferral_id)
        rows = session.scalars(query.order_by(AuditEvent.seq)).all()
        return [(e.seq, json.loads(e.payload)) for e in rows]


def deferral_count(svc):
    with svc.db.read() as session:
        return session.scalar(select(func.count()).select_from(Deferral))


def with_number(body, literal):
    """`body` as JSON text with every 1.5 in it replaced by the number literal `literal`
    (which json.dumps could not write: it would turn 1e400 into Infinity)."""
    return json.dumps(body).replace("1.5", literal).encode()


def execution_path(d):
    return f"/api/v1/deferrals/{d['id']}/execution"


def report_body(d, **changes):
    body = {"outcome": "succeeded", "action_digest": d["action_digest"], "result": {"id": "re_1"}}
    body.update(changes)
    return body


# --- finding 4: numbers beyond a double answer 422 with the pointer, never 500 --------------

OVERFLOWING = ["1e400", "-1e400", "1E+99999", "123456789e999"]


@pytest.mark.parametrize("literal", OVERFLOWING)
@pytest.mark.parametrize(
    "body, pointer",
    [
        (refund(action={"tool": "billing.refund", "args": {"amount": 1.5}}), "/action/args/amount"),
        (refund(before={"balance": [1, 1.5]}), "/before/balance/1"),
        (refund(after={"nested": {"deep": 1.5}}), "/after/nested/deep"),
        (refund(labels={"team": 1.5}), "/labels/team"),
        (refund(risk={"score": 1.5}), "/risk/score"),
        (refund(expires_in=1.5), "/expires_in"),
    ],
)
def test_a_number_beyond_a_double_in_a_deferral_is_a_422_with_its_pointer(
    agent, svc, body, pointer, literal
):
    response = agent.defer(with_number(body, literal))
    assert response.status_code == 422, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == "invalid_request"
    assert [d["path"] for d in error["details"]] == [pointer]
    assert deferral_count(svc) == 0
    [(_, refused)] = events(svc, "request.refused")
    assert refused["status"] == 422 and refused["details"][0]["path"] == pointer


@pytest.mark.parametrize("literal", OVERFLOWING)
def test_a_number_beyond_a_double_in_an_execution_report_is_a_422(agent, svc, literal):
    d = approved(svc, agent, reviewer(svc))
    raw = with_number(report_body(d, result={"charged": [1.5]}), literal)
    response = agent.request("POST", execution_path(d), raw)
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.get_json()["error"]["details"][0]["path"] == "/result/charged/0"
    with svc.db.read() as session:
        assert session.get(Execution, d["id"]) is None
    assert events(svc, "execution.violation", d["id"]) == []
    assert agent.post_json(execution_path(d), report_body(d)).status_code == 201


def test_a_number_beyond_a_double_in_a_cancel_is_a_422(agent, svc):
    d = agent.defer().get_json()
    raw = b'{"reason": "no longer needed", "extra": 1e400}'
    response = agent.request("POST", f"/api/v1/deferrals/{d['id']}/cancel", raw)
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.get_json()["error"]["details"][0]["path"] == "/extra"
    assert agent.get(f"/api/v1/deferrals/{d['id']}").get_json()["status"] == "pending"


def test_numbers_up_to_2_53_are_accepted_however_written_and_underflow_is_zero(agent, svc):
    body = refund(action={"tool": "t", "args": {"tiny": 1.5, "big": 2.5, "whole": 3.5}})
    raw = (
        json.dumps(body)
        .replace("1.5", "1e-400")
        .replace("2.5", "9007199254740991.0")
        .replace("3.5", "-9007199254740991")
    )
    response = agent.defer(raw.encode())
    assert response.status_code == 202, response.get_data(as_text=True)
    d = response.get_json()
    assert d["action"]["args"] == {"tiny": 0.0, "big": 2**53 - 1, "whole": -(2**53 - 1)}
    assert d["action_digest"].startswith("sha256:")
    with svc.db.read() as session:
        assert verify_chain(session).ok


@pytest.mark.parametrize(
    "literal", ["9007199254740992", "9007199254740992.0", "1e16", "-1.7976931348623157e308"]
)
def test_a_number_beyond_2_53_is_refused_however_written(agent, svc, literal):
    """JSON (and JSON Schema, which the document states the limit in) does not tell 1e16
    from 10000000000000000: the bound is on the number, not on its spelling."""
    raw = with_number(refund(action={"tool": "t", "args": {"n": 1.5}}), literal)
    response = agent.defer(raw)
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.get_json()["error"]["details"] == [
        {"path": "/action/args/n", "message": "number outside ±(2^53 - 1)"}
    ]
    assert deferral_count(svc) == 0


# --- finding 11: long-polls cannot starve the web tier ------------------------------------


@pytest.fixture
def gunicorn_few_threads(settings_overrides, tmp_path):
    """The app under real gunicorn: one gthread worker with 12 threads, the default cap of
    long-polls per agent (8)."""
    port = free_port()
    log = tmp_path / "gunicorn.log"
    log_file = log.open("wb")
    env = {
        **os.environ,
        "DATABASE_URL": settings_overrides["database_url"],
        "REDIS_URL": settings_overrides["redis_url"],
        "COUNTERSIGN_INSTANCE_DIR": settings_overrides["instance_dir"],
        "SECRET_KEY": settings_overrides["secret_key"],
        "COUNTERSIGN_AGENT_RATE": "0",
    }
    env.pop("COUNTERSIGN_LONG_POLLS_PER_AGENT", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "app:app", "-b", f"127.0.0.1:{port}",
         "--workers", "1", "--worker-class", "gthread", "--threads", "12",
         "--graceful-timeout", "5"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log_file,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        proc.wait()
        log_file.close()
        raise AssertionError(log.read_text()[-2000:])
    yield base
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log_file.close()


def signed_get(base, agent, path, timeout=30):
    return httpx.get(
        base + path, headers=sign_headers(agent.secret, "msg_lp", b""), timeout=timeout
    )


def timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def until(condition, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def reviewer_over_http(gunicorn_few_threads, svc):
    """A reviewer logged in to the served app over HTTP."""
    reviewer(svc, "rhea")
    with httpx.Client(base_url=gunicorn_few_threads, timeout=10) as client:
        token = csrf_token(client.get("/login").text)
        form = {"username": "rhea", "password": "correct horse battery", "csrf_token": token}
        assert client.post("/login", data=form).status_code == 302
        yield client


def test_one_agents_forty_long_polls_get_eight_places_and_starve_nobody(
    gunicorn_few_threads, reviewer_over_http, svc, agent
):
    base, browser = gunicorn_few_threads, reviewer_over_http
    d = agent.defer().get_json()
    answers = []

    def poll():
        path = f"/api/v1/deferrals/{d['id']}?wait=30"
        answers.append(timed(lambda: signed_get(base, agent, path, timeout=60)))

    threads = [threading.Thread(target=poll) for _ in range(40)]
    for t in threads:
        t.start()
    assert until(lambda: len(answers) >= 32, 20), len(answers)
    refused = [(r, took) for r, took in answers if r.status_code == 429]
    assert len(refused) == 32, [r.status_code for r, _ in answers]
    assert all(took < 15 for _, took in refused)  # at once, not after the 30 s wait
    assert all(int(r.headers["Retry-After"]) >= 1 for r, _ in refused)
    assert {r.json()["error"]["code"] for r, _ in refused} == {"rate_limited"}
    for _ in range(5):  # while eight wait, the service answers everybody else
        health, took = timed(lambda: httpx.get(base + "/healthz", timeout=10))
        assert health.status_code == 200 and took < 3, took
        page, took = timed(lambda: browser.get("/queue"))
        assert page.status_code == 200 and took < 3, took
    with svc.db.read() as session:
        me = svc.secrets.signer(session, agent.slug)
    cancel_deferral(svc, d["id"], me, "done")
    for t in threads:
        t.join(timeout=30)
    waited = [r for r, _ in answers if r.status_code == 200]
    assert len(waited) == 8 and {r.json()["status"] for r in waited} == {"cancelled"}
    # The flood of 429s left one full audit event (two if a minute turned), the rest counted.
    assert 1 <= len(events(svc, "request.refused")) <= 2


def raw_long_poll(base, agent, path):
    """A signed long-poll sent on a bare socket, so the test can walk away from it."""
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    headers = sign_headers(agent.secret, "msg_abandoned", b"")
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}"] + [f"{k}: {v}" for k, v in headers.items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def test_long_polls_abandoned_by_their_client_free_their_thread_and_place(
    gunicorn_few_threads, svc, agent, redis_client
):
    base = gunicorn_few_threads
    d = agent.defer().get_json()
    path = f"/api/v1/deferrals/{d['id']}?wait=60"
    sockets = [raw_long_poll(base, agent, path) for _ in range(8)]
    places = redis_keys.long_polls(agent.slug)
    assert until(lambda: redis_client.zcard(places) == 8, 15)  # all eight are waiting
    full = signed_get(base, agent, path, timeout=15)
    assert full.status_code == 429
    for sock in sockets:  # the client gives up without reading an answer
        sock.close()
    assert until(lambda: redis_client.zcard(places) == 0, 15)
    assert signed_get(base, agent, path.replace("60", "1")).status_code == 200
    # Eight new long-polls are all admitted: every abandoned one gave its place back.
    answers = []

    def poll():
        answers.append(signed_get(base, agent, path.replace("60", "2")).status_code)

    threads = [threading.Thread(target=poll) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    health, took = timed(lambda: httpx.get(base + "/healthz", timeout=10))
    assert health.status_code == 200 and took < 3
    for t in threads:
        t.join(timeout=10)
    assert answers == [200] * 8


def test_a_long_poll_on_an_ended_deferral_or_without_wait_takes_no_place(make_app, make_agent, svc):
    app = make_app(long_polls_per_agent=1)
    base = make_agent()
    agent = AgentClient(app.test_client(), base.slug, base.secret)
    pending = agent.defer().get_json()
    ended = approved(svc, agent, reviewer(svc))
    holder = threading.Thread(
        target=lambda: AgentClient(app.test_client(), base.slug, base.secret).get(
            f"/api/v1/deferrals/{pending['id']}?wait=3"
        )
    )
    holder.start()
    time.sleep(0.5)
    assert agent.get(f"/api/v1/deferrals/{pending['id']}?wait=3").status_code == 429
    assert agent.get(f"/api/v1/deferrals/{pending['id']}").status_code == 200
    assert agent.get(f"/api/v1/deferrals/{ended['id']}?wait=3").status_code == 200
    holder.join()
    assert agent.get(f"/api/v1/deferrals/{pending['id']}?wait=1").status_code == 200


def test_a_crashed_process_places_lapse_by_themselves(make_app, make_agent, redis_client):
    app = make_app(long_polls_per_agent=1)
    base = make_agent()
    agent = AgentClient(app.test_client(), base.slug, base.secret)
    d = agent.defer().get_json()
    # A place taken by a process that died mid-wait: its expiry has passed.
    redis_client.zadd(redis_keys.long_polls(base.slug), {"dead-process": time.time() - 1})
    assert agent.get(f"/api/v1/deferrals/{d['id']}?wait=1").status_code == 200
    redis_client.zadd(redis_keys.long_polls(base.slug), {"live": time.time() + 30})
    refused = agent.get(f"/api/v1/deferrals/{d['id']}?wait=1")
    assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 30


# --- finding 12: refusals and violations are audited in bounded form -----------------------


def test_a_flood_of_refusals_writes_one_event_and_a_count(make_app, make_agent, svc):
    app = make_app(agent_rate=0)
    base = make_agent()
    agent = AgentClient(app.test_client(), base.slug, base.secret)
    for _ in range(30):
        assert agent.defer(b"{not json").status_code == 400
    assert agent.defer(refund(risk={"score": 500})).status_code == 422  # another code
    full = [p for _, p in events(svc, "request.refused")]
    assert 2 <= len(full) <= 3  # a minute may turn during the run
    assert {p["code"] for p in full} == {"malformed_json", "invalid_request"}
    assert repeats.flush_due(svc, now=time.time() + 120) >= 1
    counted = [p for _, p in events(svc, "request.refused_repeated")]
    assert all(p["code"] == "malformed_json" and p["status"] == 400 for p in counted)
    malformed = [p for p in full if p["code"] == "malformed_json"]
    assert len(malformed) + sum(p["count"] for p in counted) == 30
    assert repeats.flush_due(svc, now=time.time() + 120) == 0  # written once
    with svc.db.read() as session:
        assert verify_chain(session).ok


def test_the_maintenance_tick_writes_the_counts_of_ended_minutes(app, svc, agent):
    kind = repeats.Kind("request.refused_repeated", agent.slug, None, {"code": "rate_limited"})
    for _ in range(3):
        repeats.count(svc, kind, at=time.time() - 60)
    repeats.count(svc, kind)  # this minute's: not due yet
    tick(svc)
    [(_, payload)] = events(svc, "request.refused_repeated")
    assert payload["count"] == 3 and payload["code"] == "rate_limited"
    assert payload["minute"].endswith("Z")


def test_the_next_full_refusal_writes_the_counts_of_ended_minutes_before_it(agent, svc):
    kind = repeats.Kind("request.refused_repeated", agent.slug, None, {"code": "rate_limited"})
    repeats.count(svc, kind, at=time.time() - 60)
    assert agent.defer(b"[").status_code == 400
    [(counted_seq, _)] = events(svc, "request.refused_repeated")
    [(full_seq, _)] = events(svc, "request.refused")
    assert counted_seq < full_seq


def test_without_redis_each_process_writes_the_first_refusal_of_a_minute(make_app, agent, svc):
    app = make_app(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    down = AgentClient(app.test_client(), agent.slug, agent.secret)
    for _ in range(5):
        assert down.defer(b"{not json").status_code == 400
    assert 1 <= len(events(svc, "request.refused")) <= 2


def test_violations_beyond_the_first_few_are_counted_not_written(app, agent, svc):
    d = approved(svc, agent, reviewer(svc))
    bad = report_body(d, action_digest="sha256:" + "0" * 64)
    for _ in range(MAX_FULL_VIOLATIONS + 15):
        assert agent.post_json(execution_path(d), bad).status_code == 409
    assert len(events(svc, "execution.violation", d["id"])) == MAX_FULL_VIOLATIONS
    repeats.flush_due(svc, now=time.time() + 120)
    counted = [p for _, p in events(svc, "execution.violation_repeated", d["id"])]
    assert sum(p["count"] for p in counted) == 15
    assert {p["rule"] for p in counted} == {"digest_mismatch"}
    page = Browser(app.test_client(), "rita").get(f"/deferrals/{d['id']}").get_data(as_text=True)
    assert f"{MAX_FULL_VIOLATIONS + 15} violations" in page and "and 15 more" in page


def test_the_deferral_page_lists_at_most_ten_violations(app, agent, svc):
    """Violations written in full before the cap existed are listed ten at a time."""
    d = approved(svc, agent, reviewer(svc))
    with chained_write(svc.db) as session:
        for i in range(40):
            record_event(
                session,
                actor_kind="agent",
                actor_id=agent.slug,
                event_type="execution.violation",
                agent=agent.slug,
                deferral_id=d["id"],
                payload={
                    "rule": "second_report",
                    "message": f"flood {i}",
                    "outcome": "succeeded",
                    "action_digest": d["action_digest"],
                },
            )
    page = Browser(app.test_client(), "rita").get(f"/deferrals/{d['id']}").get_data(as_text=True)
    listed = page.split('class="violations"')[1].split("</div>")[0]
    assert listed.count("<li>") == 10
    assert "40 violations" in page and "and 30 more" in page


# --- finding 13: execution reports are idempotent; approvals say until when -------------------


def test_a_retried_execution_report_answers_200_and_records_nothing_twice(agent, svc):
    d = approved(svc, agent, reviewer(svc))
    raw = json.dumps(report_body(d, result={"id": "re_1", "amount": 7.4})).encode()
    first = agent.request("POST", execution_path(d), raw, msg_id="msg_report_1")
    assert first.status_code == 201
    retry = agent.request("POST", execution_path(d), raw, msg_id="msg_report_1")
    assert retry.status_code == 200, retry.get_data(as_text=True)
    assert retry.get_json() == first.get_json()
    assert events(svc, "execution.violation", d["id"]) == []
    assert len(events(svc, "execution.reported", d["id"])) == 1


def test_another_body_under_the_same_webhook_id_is_still_a_second_report(agent, svc):
    d = approved(svc, agent, reviewer(svc))
    first = agent.post_json(execution_path(d), report_body(d), msg_id="msg_report_1")
    assert first.status_code == 201
    other = agent.post_json(
        execution_path(d), report_body(d, outcome="failed"), msg_id="msg_report_1"
    )
    assert other.status_code == 409 and other.get_json()["error"]["code"] == "invalid_state"
    again = agent.post_json(execution_path(d), report_body(d), msg_id="msg_report_2")
    assert again.status_code == 409
    rules = [p["rule"] for _, p in events(svc, "execution.violation", d["id"])]
    assert rules == ["second_report", "second_report"]
    with svc.db.read() as session:
        assert session.get(Execution, d["id"]).outcome == "succeeded"


def test_the_approval_event_carries_valid_until(agent, svc):
    d = approved(svc, agent, reviewer(svc))
    [(_, payload)] = events(svc, "deferral.approved", d["id"])
    assert d["decision"]["valid_until"] is not None
    assert payload["valid_until"] == d["decision"]["valid_until"]
