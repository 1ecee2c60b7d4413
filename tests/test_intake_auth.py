"""Authentication of agent requests (PROTOCOL.md section 2): one 401 for every failure."""

import time

import pytest

from review.models import AuditEvent, Deferral
from tests.helpers import count_rows

UNAUTHORIZED = {
    "error": {"code": "unauthorized", "message": "request is not signed by a known agent"}
}


@pytest.mark.parametrize(
    "headers",
    [
        {"webhook-signature": None},
        {"webhook-id": None},
        {"webhook-timestamp": None},
        {"webhook-timestamp": "yesterday"},
        {"webhook-timestamp": str(int(time.time()) - 3600)},
        {"webhook-timestamp": "99999999999999999999999"},
        {"webhook-signature": "v1,@@@"},
        {"webhook-signature": "v1"},
        {"webhook-signature": "v1,dGVzdA== v1,"},
        {"webhook-signature": "\u00e9\u00e9"},
    ],
)
def test_a_missing_malformed_or_stale_header_answers_401_never_500(agent, svc, headers):
    before = count_rows(svc, AuditEvent)
    body = b'{"summary": "x"}'
    signed = {**agent.headers(body), **headers, "Content-Type": "application/json"}
    response = agent.client.post(
        f"/api/v1/agents/{agent.slug}/deferrals",
        data=body,
        headers={k: v for k, v in signed.items() if v is not None},
    )
    assert response.status_code == 401
    assert response.get_json() == UNAUTHORIZED
    assert count_rows(svc, Deferral) == 0
    assert count_rows(svc, AuditEvent) == before  # 401s are not audited


def test_a_request_signed_with_another_secret_answers_401(make_agent):
    a = make_agent("agent-a")
    b = make_agent("agent-b")
    a.secret = b.secret
    response = a.defer()
    assert response.status_code == 401 and response.get_json() == UNAUTHORIZED


def test_an_unknown_agent_answers_the_same_401(agent):
    agent.slug = "no-such-agent"
    response = agent.defer()
    assert response.status_code == 401 and response.get_json() == UNAUTHORIZED


def test_get_requests_sign_an_empty_body(agent):
    deferral = agent.defer().get_json()
    assert agent.get(f"/api/v1/deferrals/{deferral['id']}").status_code == 200
    signed_empty = agent.headers(b"")
    sent_with_body = agent.client.get(
        f"/api/v1/deferrals/{deferral['id']}", data=b"x", headers=signed_empty
    )
    assert sent_with_body.status_code == 401


def test_a_deferral_of_another_agent_answers_404_to_its_signed_reader(make_agent):
    owner = make_agent("agent-a")
    other = make_agent("agent-b")
    deferral = owner.defer().get_json()
    response = other.get(f"/api/v1/deferrals/{deferral['id']}")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"
    cancel = other.post_json(f"/api/v1/deferrals/{deferral['id']}/cancel", {"reason": "x"})
    assert cancel.status_code == 404


def test_an_unknown_deferral_id_answers_404_and_a_forged_read_401(agent):
    assert agent.get("/api/v1/deferrals/dfr_01M7Z0G5G3WG9JGNCCSNY2C51D").status_code == 404
    agent.secret = "whsec_" + "A" * 44
    assert agent.get("/api/v1/deferrals/dfr_01M7Z0G5G3WG9JGNCCSNY2C51D").status_code == 401
