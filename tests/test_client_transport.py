"""The client's requests: signed as the service checks them, retried as the same request
when an answer is lost, long-polls that outlive a restart, errors by their meaning, and
the service's own action digest. Against a real Countersign (gunicorn),
and, for what needs no server, on its own."""

from __future__ import annotations

import json
import math
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import httpx
import pytest
import rfc8785
from countersign_client import (
    Conflict,
    Countersign,
    InvalidRequest,
    NotFound,
    RateLimited,
    RetryPolicy,
    ServerError,
    TransportError,
    Unauthorized,
    action_digest,
    canonical_json,
)
from countersign_client.signing import signed_headers
from hypothesis import given, settings
from hypothesis import strategies as st

from review import redis_keys
from review.signing import verify
from tests.client_support import decide_now, deferral_ids
from tests.helpers import audit_events, free_port, reviewer, wait_for

pytest_plugins = ["tests.client_server"]

QUICK = RetryPolicy(first_delay=0.05, max_delay=0.2, poll_max_delay=0.2, max_retry_after=5)
REFUND = {"invoice": "INV-1", "amount": 12}


def client_of(base_url: str, agent, **options) -> Countersign:
    options.setdefault("retry", QUICK)
    return Countersign(base_url, agent=agent.slug, secret=agent.secret, **options)


def deferred(cs: Countersign, **options):
    options.setdefault("on_behalf_of", "alice@example.com")
    return cs.defer(tool="billing.refund", args=REFUND, summary="Refund 12 on INV-1", **options)


@pytest.fixture
def served(countersign_server, agent):
    """The client of billing-bot, straight to the served app."""
    cs = client_of(countersign_server.base_url, agent)
    yield cs
    cs.close()


# --- with a real Countersign ---------------------------------------------------------------


def test_a_defer_whose_answer_was_lost_is_retried_as_the_same_deferral(
    countersign_server, agent, svc, dropping_proxy
):
    proxy = dropping_proxy(countersign_server.port)
    with client_of(proxy.url, agent) as cs:
        d = deferred(cs)
    assert proxy.dropped == 1 and proxy.connections == 2
    assert deferral_ids(svc) == {d.id}  # the service made it once, and answered the retry
    assert d.status == "pending" and d.action == {"tool": "billing.refund", "args": REFUND}


def test_the_humans_intent_travels_with_the_deferral_into_its_received_event(served, svc):
    asked = "Refund Alice's duplicate charge from last week"
    d = deferred(served, intent=asked)
    (received,) = audit_events(svc, "deferral.received", deferral_id=d.id)
    assert json.loads(received.payload)["intent"] == asked


def test_a_report_whose_answer_was_lost_is_recorded_once(
    countersign_server, served, agent, svc, dropping_proxy
):
    d = deferred(served)
    decide_now(svc, reviewer(svc), d.id, "approve")
    approved = served.get(d.id)
    proxy = dropping_proxy(countersign_server.port)
    with client_of(proxy.url, agent) as cs:
        reported = cs.report_execution(approved, "succeeded", {"refund": "R-1"})
    assert proxy.dropped == 1
    assert reported.execution["result"] == {"refund": "R-1"}
    assert audit_events(svc, "execution.violation") == []


def test_wait_outlives_a_restart_of_the_service(countersign_server, agent, svc, redis_client):
    cs = client_of(countersign_server.base_url, agent, retry=RetryPolicy())  # the default
    d = deferred(cs)
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(cs.wait, d.id, 90)
        places = redis_keys.long_polls(agent.slug)
        wait_for(lambda: redis_client.zcard(places) == 1, message="the long-poll never began")
        countersign_server.stop_web()
        assert countersign_server.refuses_connections()
        time.sleep(2)  # the client meets refused connections and backs off
        assert not waiting.done()
        countersign_server.start_web()
        decide_now(svc, reviewer(svc), d.id, "approve")
        ended = waiting.result(timeout=60)
    cs.close()
    assert ended.status == "approved" and ended.id == d.id


def test_wait_answers_the_pending_deferral_when_its_time_is_up(served):
    d = deferred(served)
    started = time.monotonic()
    still = served.wait(d.id, timeout=2)
    assert still.status == "pending" and not still.terminal
    assert 1.9 <= time.monotonic() - started < 10


def test_error_answers_are_raised_by_their_meaning(countersign_server, served, agent):
    with pytest.raises(InvalidRequest) as caught:
        deferred(served, expires_in=5)
    assert caught.value.status == 422 and caught.value.code == "invalid_request"
    assert [d["path"] for d in caught.value.details] == ["/expires_in"]
    with pytest.raises(NotFound):
        served.get("dfr_00000000000000000000000000")
    d = deferred(served, idempotency_key="refund-INV-1")
    assert deferred(served, idempotency_key="refund-INV-1").id == d.id
    with pytest.raises(Conflict) as caught:
        served.defer(
            tool="billing.refund", args={**REFUND, "amount": 13}, summary="Refund 13",
            on_behalf_of="alice@example.com", idempotency_key="refund-INV-1",
        )  # fmt: skip
    assert caught.value.code == "idempotency_conflict"
    served.cancel(d.id, reason="not needed")
    with pytest.raises(Conflict) as caught:
        served.cancel(d.id, reason="twice")
    assert caught.value.code == "invalid_state"
    impostor = SimpleNamespace(slug=agent.slug, secret="whsec_" + "A" * 44)
    with client_of(countersign_server.base_url, impostor) as cs, pytest.raises(Unauthorized):
        cs.status()


@pytest.mark.parametrize("countersign_settings", [{"COUNTERSIGN_AGENT_MAX_PENDING": "1"}])
def test_a_429_is_retried_after_its_retry_after_or_raised_with_it(served):
    deferred(served)
    started = time.monotonic()
    with pytest.raises(RateLimited) as caught:  # Retry-After 30 is over the policy's 5 s
        deferred(served)
    assert caught.value.retry_after == 30 and time.monotonic() - started < 3


def test_the_service_computes_the_same_digest_of_awkward_actions(served):
    args = {
        "ünïcode": "\u2028 tab\t quote\" nul-free",
        "floats": [1.5e-7, 4.5e15, 0.1, -0.0, 123456.789, 5e-324],  # within ±(2^53 - 1)
        "😀": {"b": None, "a": [True, False, 9007199254740991]},
        "\u00e9": 1, "e\u0301": 2, "Z": 3, "a": 4,
    }  # fmt: skip
    d = served.defer(tool="crm.note", args=args, summary="awkward", on_behalf_of="alice")
    assert d.action_digest == action_digest("crm.note", args)


# --- without a server ---------------------------------------------------------------------


def test_signed_requests_verify_as_the_service_checks_them():
    secret = "whsec_" + "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I="
    body = json.dumps({"action": {"tool": "t", "args": {}}}).encode()
    headers = signed_headers(secret, "msg_1", body)
    assert verify([secret], headers, body) == "msg_1"
    assert verify([secret], signed_headers(secret, "msg_2", b""), b"") == "msg_2"


def recorded(*answers):
    """An httpx transport answering from `answers` in turn (the last repeats); what it got."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        reply = answers[min(len(seen), len(answers)) - 1]
        if isinstance(reply, Exception):
            raise reply
        return reply

    return httpx.MockTransport(answer), seen


RESOURCE = {"id": "dfr_1", "status": "pending", "action": {"tool": "t", "args": {}}}
SECRET = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I="


def offline_client(transport, **options) -> Countersign:
    return Countersign(
        "http://countersign.test", agent="bot", secret=SECRET,
        http_client=httpx.Client(transport=transport), **options,
    )  # fmt: skip


def test_retries_carry_one_webhook_id_and_honour_retry_after():
    transport, seen = recorded(
        httpx.ConnectError("refused"),
        httpx.Response(503, headers={"Retry-After": "0.3"}, json={"error": {"code": "x"}}),
        httpx.Response(202, json=RESOURCE),
    )
    cs = offline_client(transport, retry=QUICK)
    started = time.monotonic()
    d = cs.defer(tool="t", args={}, summary="s", idempotency_key="key-1")
    assert d.id == "dfr_1" and time.monotonic() - started >= 0.3
    assert {r.headers["webhook-id"] for r in seen} == {"key-1"} and len(seen) == 3
    assert len({r.content for r in seen}) == 1
    assert json.loads(seen[0].content)["on_behalf_of"] == {"id": "system:bot"}


def test_retries_are_bounded_and_then_raised_by_meaning():
    transport, seen = recorded(httpx.Response(500, json={"error": {"code": "internal_error"}}))
    with pytest.raises(ServerError):
        offline_client(transport, retry=QUICK).get("dfr_1")
    assert len(seen) == QUICK.attempts
    transport, seen = recorded(httpx.ReadTimeout("slow"))
    with pytest.raises(TransportError):
        offline_client(transport, retry=QUICK).status()
    assert len(seen) == QUICK.attempts
    transport, seen = recorded(httpx.Response(422, json={"error": {"code": "invalid_request"}}))
    with pytest.raises(InvalidRequest):
        offline_client(transport, retry=QUICK).cancel("dfr_1", reason="r")
    assert len(seen) == 1  # a refusal is not retried


def test_wait_with_the_service_down_throughout_raises_after_its_timeout():
    cs = Countersign(f"http://127.0.0.1:{free_port()}", agent="bot", secret=SECRET, retry=QUICK)
    started = time.monotonic()
    with pytest.raises(TransportError):
        cs.wait("dfr_1", timeout=1.5)
    assert 1.4 <= time.monotonic() - started < 5
    cs.close()


def test_the_default_schedule_is_the_documented_one():
    policy = RetryPolicy()
    for retry, full in enumerate([0.5, 1, 2, 4], start=1):
        assert all(full / 2 <= policy.pause(retry, None) <= full for _ in range(50))
    assert policy.pause(5, None) is None  # five tries in all
    assert policy.pause(1, 30) == 30 and policy.pause(1, 61) is None
    assert all(5 <= policy.poll_pause(n, None) <= 10 for n in range(6, 30))


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_canonical_json_is_the_services_rfc8785(value):
    assert canonical_json(value) == rfc8785.dumps(value)


@pytest.mark.parametrize("bad", [math.nan, math.inf, 2**53, {1: "x"}, object(), "\ud800"])
def test_canonical_json_refuses_what_is_not_json(bad):
    with pytest.raises((TypeError, ValueError)):
        canonical_json(bad)
