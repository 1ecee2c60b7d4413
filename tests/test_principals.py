"""Verified principals: `on_behalf_of.token` checked against a real JWKS (PROTOCOL.md section 17).

The identity provider is tests/principal_issuer.py: discovery and keys over HTTP on
loopback, RSA keys made by the test, tokens signed with PyJWT.
"""

from __future__ import annotations

import json
import logging
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import MetaData, select

from review.audit import export
from review.audit.checkpoints import load_key
from review.intake import principal_keys
from review.models import Deferral
from tests.helpers import Browser, audit_events, refund
from tests.principal_issuer import AUDIENCE, Issuer


@pytest.fixture
def issuer():
    made = Issuer()
    yield made
    made.close()


@pytest.fixture
def app(make_app, issuer):
    return make_app(principal_issuers=issuer.url, principal_audience=AUDIENCE)


def with_token(token: str, principal: str = "alice@example.com", **changes):
    return refund(
        on_behalf_of={"id": principal, "display_name": "Alice", "token": token}, **changes
    )


def refused(response, why: str) -> None:
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "invalid_principal_token"
    assert error["details"][0]["path"] == "/on_behalf_of/token"
    assert why in error["details"][0]["message"], error


def test_a_valid_token_makes_a_verified_principal_with_groups(agent, svc, issuer):
    token = issuer.token(groups=["finance", "staff"], email="alice@example.com")
    response = agent.defer(with_token(token))
    assert response.status_code == 202, response.get_json()
    principal = response.get_json()["on_behalf_of"]
    assert principal == {
        "id": "alice@example.com",
        "display_name": "Alice",
        "verified": True,
        "issuer": issuer.url,
        "groups": ["finance", "staff"],
    }
    read = agent.get(f"/api/v1/deferrals/{response.get_json()['id']}").get_json()
    assert read["on_behalf_of"] == principal
    received = json.loads(audit_events(svc, deferral_id=read["id"])[0].payload)
    assert received["on_behalf_of"]["verified"] is True
    assert received["on_behalf_of"]["groups"] == ["finance", "staff"]
    assert "token" not in received["on_behalf_of"]


def test_a_claimed_principal_stays_unverified(agent):
    principal = agent.defer().get_json()["on_behalf_of"]
    assert principal["verified"] is False and principal["issuer"] is None


def test_sub_may_be_the_claimed_id(agent, issuer):
    response = agent.defer(with_token(issuer.token(sub="u-4711"), principal="u-4711"))
    assert response.status_code == 202 and response.get_json()["on_behalf_of"]["verified"]


def test_an_expired_token_is_refused_and_the_refusal_audited(agent, svc, issuer):
    response = agent.defer(with_token(issuer.token(lifetime=-120)))  # past the 60 s leeway
    refused(response, "expired")
    events = [e for e in audit_events(svc) if e.event_type == "request.refused"]
    assert events and json.loads(events[-1].payload)["code"] == "invalid_principal_token"


def test_a_token_just_past_expiry_passes_within_the_leeway(agent, issuer):
    assert agent.defer(with_token(issuer.token(lifetime=-30))).status_code == 202


def test_a_token_not_yet_valid_is_refused(agent, issuer):
    refused(agent.defer(with_token(issuer.token(nbf=int(time.time()) + 600))), "nbf")


def test_a_token_for_another_audience_is_refused(agent, issuer):
    refused(agent.defer(with_token(issuer.token(aud="another-app"))), "aud")


def test_a_token_from_an_untrusted_issuer_is_refused(agent, issuer):
    refused(agent.defer(with_token(issuer.token(iss="https://evil.example.com"))), "issuer")


def test_a_token_signed_with_another_key_is_refused(agent, issuer):
    forged_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    refused(agent.defer(with_token(issuer.token(key=forged_key))), "signature")


def test_a_token_for_someone_else_is_refused(agent, issuer):
    token = issuer.token(sub="bob@example.com", email="bob@example.com")
    refused(agent.defer(with_token(token)), "not on_behalf_of.id")


def test_an_email_the_issuer_did_not_verify_does_not_count(agent, issuer):
    token = issuer.token(sub="u-1", email="alice@example.com", email_verified=False)
    refused(agent.defer(with_token(token)), "not on_behalf_of.id")


def test_an_email_the_issuer_does_not_say_it_verified_does_not_count(agent, issuer):
    token = issuer.token(sub="u-1", email="alice@example.com")
    refused(agent.defer(with_token(token)), "not on_behalf_of.id")


def test_a_verified_email_names_the_principal(agent, issuer):
    token = issuer.token(sub="u-1", email="alice@example.com", email_verified=True)
    assert agent.defer(with_token(token)).status_code == 202


def test_an_unsigned_token_is_refused(agent, issuer):
    import jwt

    token = jwt.encode({"iss": issuer.url, "aud": AUDIENCE, "sub": "alice@example.com",
                        "exp": int(time.time()) + 60}, None, algorithm="none")  # fmt: skip
    refused(agent.defer(with_token(token)), "algorithm")


def test_a_rotated_key_is_fetched_once_and_verifies(agent, issuer, monkeypatch):
    assert agent.defer(with_token(issuer.token())).status_code == 202
    assert agent.defer(with_token(issuer.token())).status_code == 202
    assert issuer.hits["/jwks"] == 1  # cached
    monkeypatch.setattr(principal_keys, "MIN_REFETCH_SECONDS", 0.0)
    issuer.rotate()
    assert agent.defer(with_token(issuer.token())).status_code == 202
    assert issuer.hits["/jwks"] == 2
    assert issuer.hits["/.well-known/openid-configuration"] == 1


def test_unknown_key_ids_do_not_refetch_more_than_once_in_the_interval(agent, issuer):
    assert agent.defer(with_token(issuer.token())).status_code == 202
    for n in range(3):
        refused(agent.defer(with_token(issuer.token(kid=f"made-up-{n}"))), "not signed by a key")
    assert issuer.hits["/jwks"] == 1


def test_an_issuer_that_is_down_answers_503_quickly_and_never_500(agent, issuer):
    issuer.down = True
    started = time.monotonic()
    response = agent.defer(with_token(issuer.token()))
    assert response.status_code == 503, response.get_json()
    assert response.get_json()["error"]["code"] == "principal_keys_unavailable"
    assert response.headers["Retry-After"] == "30"
    again = agent.defer(with_token(issuer.token()))  # the failure is remembered: no second wait
    assert again.status_code == 503
    assert time.monotonic() - started < principal_keys.FETCH_DEADLINE + 2
    assert issuer.hits["/.well-known/openid-configuration"] == 1


def test_a_token_without_trusted_issuers_is_refused(make_app, make_agent, issuer):
    other = make_app()
    agent = make_agent().on(other)
    refused(agent.defer(with_token(issuer.token())), "issuer")


def test_a_retry_with_a_fresh_token_is_the_same_request(agent, issuer):
    first = agent.defer(with_token(issuer.token(jti="a")), msg_id="msg_same")
    again = agent.defer(with_token(issuer.token(jti="b")), msg_id="msg_same")
    assert first.status_code == 202 and again.status_code == 200
    assert again.get_json()["id"] == first.get_json()["id"]


def test_a_retry_whose_token_expired_since_answers_with_the_stored_deferral(agent, issuer):
    """The answer was lost and the retry comes after the token's expiry: the deferral was
    created, so the retry is answered with it, not refused."""
    first = agent.defer(with_token(issuer.token(jti="a")), msg_id="msg_lost_answer")
    late = agent.defer(with_token(issuer.token(lifetime=-3600)), msg_id="msg_lost_answer")
    assert first.status_code == 202 and late.status_code == 200
    assert late.get_json()["id"] == first.get_json()["id"]
    assert late.get_json()["on_behalf_of"]["verified"] is True


def test_an_expired_token_under_a_used_webhook_id_with_another_body_is_a_conflict(agent, issuer):
    assert agent.defer(with_token(issuer.token()), msg_id="msg_used").status_code == 202
    other = with_token(issuer.token(lifetime=-3600), summary="Something else entirely")
    answer = agent.defer(other, msg_id="msg_used")
    assert answer.status_code == 409
    assert answer.get_json()["error"]["code"] == "idempotency_conflict"


def test_an_expired_token_on_a_new_request_is_still_refused(agent, issuer):
    refused(agent.defer(with_token(issuer.token(lifetime=-3600)), msg_id="msg_new"), "expired")


def test_the_token_is_never_stored_exported_or_logged(agent, svc, issuer, caplog):
    caplog.set_level(logging.DEBUG)
    token = issuer.token(groups=["finance"])
    expired = issuer.token(lifetime=-3600)
    assert agent.defer(with_token(token)).status_code == 202
    assert agent.defer(with_token(expired)).status_code == 422
    signature = token.rsplit(".", 1)[1]
    with svc.db.read() as session:
        tables = MetaData()
        tables.reflect(session.connection())
        for table in tables.sorted_tables:
            for row in session.execute(select(table)):
                text = " ".join(str(v) for v in row)
                for secret in (token, signature, expired.rsplit(".", 1)[1]):
                    assert secret not in text, table.name
    with svc.db.read() as session:
        exported = "".join(export.jsonl(session, load_key(svc.settings.audit_key_file)))
    assert "verified" in exported and issuer.url in exported  # the proof, not the token
    assert signature not in exported and expired.rsplit(".", 1)[1] not in exported
    assert signature not in caplog.text and expired.rsplit(".", 1)[1] not in caplog.text


def test_separation_of_duties_uses_the_verified_email(app, svc, agent, issuer, people):
    # The agent names the principal by the IdP's subject; the token says it is rita.
    token = issuer.token(sub="u-rita", email="rita@example.com", email_verified=True)
    mine = agent.defer(with_token(token, principal="u-rita")).get_json()["id"]
    Browser(app.test_client(), "rita").post("/batch/start")
    with svc.db.read() as session:
        assert session.get(Deferral, mine).status == "pending"  # never handed to rita
    Browser(app.test_client(), "sam").post("/batch/start")
    with svc.db.read() as session:
        assert session.get(Deferral, mine).status == "in_review"


def test_the_queue_marks_the_rows_whose_principal_a_token_proved(app, agent, issuer, people):
    agent.defer(with_token(issuer.token(), summary="Refund proved"))
    agent.defer(refund(summary="Refund claimed", on_behalf_of={"id": "bob@example.com"}))
    page = Browser(app.test_client(), "sam").get("/queue").get_data(as_text=True)
    proved, claimed = (row for row in page.split("<tr>")[2:4])
    if "Refund claimed" in proved:
        proved, claimed = claimed, proved
    assert "Refund proved" in proved and ">verified</span>" in proved
    assert "Refund claimed" in claimed and ">verified</span>" not in claimed
