"""The headers every answer carries: the agents' API and the pages alike.

The app-wide hooks (request ids, the safety headers, CSRF, flask-login's remember
cookie, the session) cost an API request nothing it does not need; these tests hold
what each kind of answer carries, so that no header is lost on the way."""

import pytest

from review.users import create_user
from tests.helpers import Browser

COOKIE = "countersign_session"
SAFETY = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'; "
        "frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}


def names(response) -> list[str]:
    return sorted(name.lower() for name, _value in response.headers)


def assert_safe(response) -> None:
    for name, value in SAFETY.items():
        assert response.headers.getlist(name) == [value], name
    request_ids = response.headers.getlist("X-Request-ID")
    assert len(request_ids) == 1 and len(request_ids[0]) > 0


@pytest.fixture
def rita(app, svc):
    with svc.db.write() as session:
        create_user(session, "rita", "reviewer", "correct horse battery")
    return Browser(app.test_client(), "rita")


def test_an_intake_answer_carries_the_safety_headers_and_its_request_id(agent):
    answer = agent.defer(headers={"X-Request-ID": "edge-intake-1"})
    assert answer.status_code == 202
    assert_safe(answer)
    assert answer.headers["X-Request-ID"] == "edge-intake-1"
    assert names(answer) == sorted(
        ["content-type", "content-length", "x-request-id", *SAFETY]
    )  # no cookie, no Vary: an agent holds no session


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/api/v1/agents/nobody/deferrals", 401),  # unsigned by anyone we know
        ("GET", "/api/v1/no-such-thing", 404),
        ("PUT", "/api/v1/agents/nobody/deferrals", 405),
    ],
)
def test_api_refusals_carry_the_same_headers(client, method, path, status):
    answer = client.open(path, method=method, data=b"{}", content_type="application/json")
    assert answer.status_code == status
    assert_safe(answer)
    assert "set-cookie" not in names(answer) and "vary" not in names(answer)
    assert answer.is_json


def test_an_agent_request_with_a_browsers_cookie_neither_reads_nor_writes_it(agent, rita):
    agent.client.set_cookie(COOKIE, rita.client.get_cookie(COOKIE).value)
    answer = agent.defer()
    assert answer.status_code == 202
    assert "set-cookie" not in names(answer) and "vary" not in names(answer)
    assert rita.get("/settings").status_code == 200  # the browser's session is as it was


def test_a_page_carries_the_safety_headers_its_request_id_and_its_session(client, rita):
    first = client.get("/login")
    assert_safe(first)
    assert COOKIE in first.headers["Set-Cookie"]  # the form's CSRF value, in a new session
    assert "Cookie" in first.headers["Vary"]
    page = rita.get("/settings")
    assert page.status_code == 200
    assert_safe(page)
    assert "set-cookie" not in names(page) and "Cookie" in page.headers["Vary"]


def test_an_answer_outside_the_api_sets_no_cookie_it_was_not_sent(client):
    answer = client.get("/livez")
    assert answer.status_code == 200
    assert_safe(answer)
    assert "set-cookie" not in names(answer)
    assert answer.headers["Vary"] == "Cookie"  # flask-login looked for a remember cookie
