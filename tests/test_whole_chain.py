"""The whole chain (PROTOCOL.md section 17): the human's intent at intake, the credential
on the execution report, and the evidence page reading intent -> decision -> evaluation
-> approval -> execution -> response."""

from __future__ import annotations

import json

from review.audit.redaction import PREFIX
from review.users import create_user
from tests.helpers import Browser, approved, audit_events, logged_in, refund, reviewer

INTENT = 'Please refund INV-1, I was charged twice <script>alert("x")</script>'


def test_intent_is_kept_in_the_received_event_and_shown_as_untrusted_text(app, svc, agent, people):
    d = agent.defer(refund(intent=INTENT)).get_json()
    received = json.loads(audit_events(svc, deferral_id=d["id"])[0].payload)
    assert received["intent"] == INTENT
    page = Browser(app.test_client(), "ada").get(f"/deferrals/{d['id']}").get_data(as_text=True)
    assert "What the principal asked for" in page and "relayed by the agent, unverified" in page
    assert "&lt;script&gt;" in page and "<script>alert" not in page


def test_intent_is_redactable_like_any_field(make_app, make_agent):
    app = make_app(audit_redact="intent")
    svc = app.extensions["countersign"]
    agent = make_agent().on(app)
    d = agent.defer(refund(intent=INTENT)).get_json()
    received = json.loads(audit_events(svc, deferral_id=d["id"])[0].payload)
    assert received["intent"].startswith(PREFIX) and received["intent"] == svc.redactor.digest(
        INTENT
    )


def test_intent_over_4000_characters_is_refused(agent):
    response = agent.defer(refund(intent="x" * 4001))
    assert response.status_code == 422
    assert response.get_json()["error"]["details"][0]["path"] == "/intent"


def test_an_execution_report_may_name_its_credential(agent, svc):
    d = approved(svc, agent, reviewer(svc))
    credential = {"type": "oauth_client", "id": "billing-bot@stripe"}
    response = agent.post_json(
        f"/api/v1/deferrals/{d['id']}/execution",
        {"outcome": "succeeded", "action_digest": d["action_digest"], "credential": credential},
    )
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["execution"]["credential"] == credential
    reported = [
        e for e in audit_events(svc, deferral_id=d["id"]) if e.event_type == "execution.reported"
    ]
    assert json.loads(reported[0].payload)["credential"] == credential


def test_a_credential_must_have_a_type_and_an_id(agent, svc):
    d = approved(svc, agent, reviewer(svc))
    response = agent.post_json(
        f"/api/v1/deferrals/{d['id']}/execution",
        {"outcome": "succeeded", "action_digest": d["action_digest"], "credential": {"id": "x"}},
    )
    assert response.status_code == 422
    assert response.get_json()["error"]["details"][0]["path"] == "/credential/type"


def test_the_evidence_reads_from_intent_to_response(app, svc, agent):
    with svc.db.write() as session:
        create_user(session, "audrey", "auditor", "correct horse battery")
    d = approved(svc, agent, reviewer(svc), refund(intent="refund the double charge"))
    agent.post_json(
        f"/api/v1/deferrals/{d['id']}/execution",
        {
            "outcome": "succeeded",
            "action_digest": d["action_digest"],
            "result": {"refund": "re_42"},
            "credential": {"type": "api_key", "id": "sk_live_...4242"},
        },
    )
    page = logged_in(app, "audrey").get(f"/audit/deferrals/{d['id']}").get_data(as_text=True)
    order = [  # each stage, and a line only it shows
        ">Intent</h2>",
        "refund the double charge",
        ">Decision</h2>",
        "It decided to run",
        ">Evaluation</h2>",
        ">Approval</h2>",
        "approved by rita",
        ">Execution</h2>",
        "acting with credential",
        ">Response</h2>",
        "What the action answered",
    ]
    at = [page.index(marker) for marker in order]
    assert at == sorted(at), list(zip(order, at, strict=True))
    assert "claimed by the agent" in page and page.rindex("re_42") > at[-1]
