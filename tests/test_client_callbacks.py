"""verify_callback reads the callbacks a real worker delivers (all three kinds) and raises
InvalidCallback, and nothing else, for anything else; SeenIds deduplicates webhook-ids."""

from __future__ import annotations

import json
import time

import pytest
from countersign_client import Countersign, InvalidCallback, SeenIds, verify_callback
from countersign_client.signing import signed_headers
from hypothesis import given, settings
from hypothesis import strategies as st

from review.agents.killswitch import Actor, kill, revive
from tests.client_support import decide_now
from tests.helpers import reviewer, wait_for

pytest_plugins = ["tests.client_server"]

SECRET = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I="
OTHER_SECRET = "whsec_b3RoZXItb3RoZXItb3RoZXItb3RoZXItb3RoZXI="


def test_it_verifies_the_callbacks_a_worker_delivers_of_every_kind(
    countersign_worker, make_agent, receiver_factory, svc
):
    receiver = receiver_factory()
    agent = make_agent(callback_url=receiver.url, allow_private_callbacks=True)

    def delivered() -> list[dict]:  # each event once (delivery is at least once)
        events = [verify_callback(agent.secret, h, body) for h, body, _ in receiver.requests]
        return list({e["webhook_id"]: e for e in events}.values())

    with Countersign(countersign_worker.base_url, agent=agent.slug, secret=agent.secret) as cs:
        d = cs.defer(tool="crm.note", args={"text": "hi"}, summary="Note", on_behalf_of="alice")
        decide_now(svc, reviewer(svc), d.id, "approve")
        wait_for(lambda: len(delivered()) == 1, timeout=30, message="no deferral.decided")
        kill(svc, agent.slug, Actor("user", "olivia"), "it went rogue")
        wait_for(lambda: len(delivered()) == 2, timeout=30, message="no agent.killed")
        revive(svc, agent.slug, Actor("user", "olivia"), "fixed")
        wait_for(lambda: len(delivered()) == 3, timeout=30, message="no agent.revived")
    events = delivered()
    assert [e["type"] for e in events] == ["deferral.decided", "agent.killed", "agent.revived"]
    decided, killed, revived = (e["data"] for e in events)
    assert decided["id"] == d.id and decided["status"] == "approved"
    assert decided["action_digest"] == d.action_digest
    assert killed["state"] == "killed" and killed["reason"] == "it went rogue"
    assert revived["state"] == "active" and revived["changed_by"] == "olivia"
    headers, body, _ = receiver.requests[0]
    assert events[0]["webhook_id"] == {k.lower(): v for k, v in headers.items()}["webhook-id"]
    # Rotation: any one of the secrets given may have signed it.
    assert (
        verify_callback([OTHER_SECRET, agent.secret], headers, body)["type"] == "deferral.decided"
    )
    with pytest.raises(InvalidCallback):
        verify_callback(OTHER_SECRET, headers, body)
    with pytest.raises(InvalidCallback):
        verify_callback(agent.secret, headers, body.replace(b"approved", b"rejected"))
    seen = SeenIds()
    assert [seen.add(e["webhook_id"]) for e in events + events] == [True] * 3 + [False] * 3


def signed(body: bytes, secret: str = SECRET, at: float | None = None) -> dict:
    return signed_headers(secret, "msg_1", body, at=at) if body.isascii() else _raw(body, at)


def _raw(body: bytes, at: float | None) -> dict:
    """Headers for bytes that are not text (the package signs text only)."""
    import base64

    from standardwebhooks.webhooks import hmac_data

    stamp = str(int(time.time() if at is None else at))
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    mac = hmac_data(key, b"msg_1." + stamp.encode() + b"." + body)
    return {
        "webhook-id": "msg_1",
        "webhook-timestamp": stamp,
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }


GOOD = json.dumps(
    {"type": "agent.killed", "timestamp": "t", "data": {"agent": "a", "state": "killed"}}
).encode()


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\xff\xfe not utf-8",
        b"not json",
        b"[1, 2]",
        b'"a string"',
        b"null",
        b'{"type": "deferral.decided"}',
        b'{"type": "deferral.decided", "data": {"id": 1}}',
        b'{"type": "agent.killed", "data": []}',
        b'{"type": "agent.revived", "data": {"agent": "a"}}',
        b'{"type": "something.else", "data": {}}',
        b'{"type": ["deferral.decided"], "data": {}}',
        b'{"type": "agent.killed", "data": {"agent": "a", "state": NaN}}',
        b"[" * 100_000,
    ],
)
def test_a_correctly_signed_body_that_is_not_an_event_is_an_invalid_callback(body):
    with pytest.raises(InvalidCallback):
        verify_callback(SECRET, signed(body), body)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        None,
        "webhook-id",
        [("webhook-id",)],
        {"webhook-id": "msg_1", "webhook-timestamp": "soon", "webhook-signature": "v1,x"},
        {**signed(GOOD), "webhook-signature": "v1,!!!not base64"},
        {**signed(GOOD), "webhook-signature": "v1"},
        {**signed(GOOD), "webhook-signature": "v2," + signed(GOOD)["webhook-signature"][3:]},
        {**signed(GOOD), "webhook-timestamp": "9" * 40},
        {**signed(GOOD), "webhook-id": "\ud800"},
        {**signed(GOOD), "webhook-id": 7},
        signed(GOOD, at=time.time() - 3600),  # stale
        {**signed(GOOD), "webhook-id": "msg_2"},  # not what was signed
    ],
)
def test_bad_headers_are_an_invalid_callback(headers):
    with pytest.raises(InvalidCallback):
        verify_callback(SECRET, headers, GOOD)


@pytest.mark.parametrize("secret", ["whsec_!!!", "", None, 42, [], [None]])
def test_a_secret_that_is_not_one_is_an_invalid_callback_too(secret):
    with pytest.raises(InvalidCallback):
        verify_callback(secret, signed(GOOD), GOOD)


def test_headers_are_read_whatever_their_case_and_container():
    shouted = {k.upper(): v for k, v in signed(GOOD).items()}
    assert verify_callback(SECRET, shouted, GOOD)["data"]["state"] == "killed"
    assert verify_callback(SECRET, list(shouted.items()), GOOD.decode())["type"] == "agent.killed"
    with pytest.raises(InvalidCallback):
        verify_callback(SECRET, shouted, None)


@settings(max_examples=300, deadline=None)
@given(
    headers=st.dictionaries(
        st.sampled_from(["webhook-id", "webhook-timestamp", "webhook-signature", "x"]),
        st.text(max_size=40) | st.binary(max_size=40),
    ),
    body=st.binary(max_size=200),
    sign=st.booleans(),
)
def test_junk_raises_invalid_callback_and_nothing_else(headers, body, sign):
    if sign:
        headers = {**headers, **_raw(body, None)}
    try:
        event = verify_callback(SECRET, headers, body)
    except InvalidCallback:
        return
    assert event["type"] in ("deferral.decided", "agent.killed", "agent.revived")


def test_seen_ids_forget_after_their_ttl_and_keep_at_most_max_ids():
    now = [0.0]
    seen = SeenIds(ttl=10, max_ids=3, clock=lambda: now[0])
    assert seen.add("a") and not seen.add("a") and "a" in seen
    now[0] = 11
    assert "a" not in seen and seen.add("a")
    for name in "bcd":
        seen.add(name)
    assert len(seen) == 3 and "a" not in seen  # the oldest went first
    seen.discard("d")
    assert seen.add("d")  # handling failed: its retry is handled
