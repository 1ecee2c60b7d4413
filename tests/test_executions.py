"""Execution reports (PROTOCOL.md 4.4): recorded once, only for a valid approval of the same
action; every refused report is still in the audit log as a violation, and on the pages."""

import json
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from review.models import Agent, AuditEvent, Deferral, Execution, utcnow
from tests.helpers import Browser, approved, refund, reviewer


def report(agent, d, **changes):
    body = {"outcome": "succeeded", "action_digest": d["action_digest"], "result": {"id": "re_1"}}
    body.update(changes)
    return agent.post_json(f"/api/v1/deferrals/{d['id']}/execution", body)


def violations(svc, deferral_id):
    with svc.db.read() as session:
        rows = session.scalars(
            select(AuditEvent.payload).where(
                AuditEvent.deferral_id == deferral_id,
                AuditEvent.event_type == "execution.violation",
            )
        ).all()
    return [json.loads(p) for p in rows]


def test_a_report_on_a_valid_approval_is_recorded_and_shown_in_the_resource(agent, svc):
    d = approved(svc, agent, reviewer(svc))
    response = report(agent, d)
    assert response.status_code == 201
    execution = response.get_json()["execution"]
    assert execution["outcome"] == "succeeded" and execution["result"] == {"id": "re_1"}
    assert execution["reported_at"].endswith("Z")
    assert agent.get(f"/api/v1/deferrals/{d['id']}").get_json()["execution"] == execution
    with svc.db.read() as session:
        event = session.scalars(
            select(AuditEvent).where(
                AuditEvent.deferral_id == d["id"], AuditEvent.event_type == "execution.reported"
            )
        ).one()
    assert json.loads(event.payload)["result"] == {"id": "re_1"}
    assert event.actor_kind == "agent" and event.actor_id == agent.slug


def test_a_second_report_is_409_and_a_violation(agent, svc):
    d = approved(svc, agent, reviewer(svc))
    assert report(agent, d).status_code == 201
    second = report(agent, d, outcome="failed")
    assert second.status_code == 409 and second.get_json()["error"]["code"] == "invalid_state"
    assert [v["rule"] for v in violations(svc, d["id"])] == ["second_report"]
    with svc.db.read() as session:
        assert session.get(Execution, d["id"]).outcome == "succeeded"


def test_a_report_for_a_pending_deferral_is_refused_and_audited(agent, svc):
    d = agent.defer().get_json()
    response = report(agent, d)
    assert response.status_code == 409
    assert "pending" in response.get_json()["error"]["message"]
    [violation] = violations(svc, d["id"])
    assert violation["rule"] == "not_approved" and violation["result"] == {"id": "re_1"}


def test_a_report_with_another_digest_is_refused(agent, svc):
    d = approved(svc, agent, reviewer(svc))
    response = report(agent, d, action_digest="sha256:" + "0" * 64)
    assert response.status_code == 409
    [violation] = violations(svc, d["id"])
    assert violation["rule"] == "digest_mismatch"
    assert violation["approved_digest"] == d["action_digest"]
    assert agent.get(f"/api/v1/deferrals/{d['id']}").get_json()["execution"] is None


def test_a_report_after_the_approval_lapsed_is_refused(agent, svc):
    d = approved(svc, agent, reviewer(svc))
    with svc.db.write() as session:
        session.execute(
            update(Deferral)
            .where(Deferral.id == d["id"])
            .values(valid_until=utcnow() - timedelta(seconds=1))
        )
    assert report(agent, d).status_code == 409
    assert [v["rule"] for v in violations(svc, d["id"])] == ["approval_expired"]


def test_a_report_from_a_killed_agent_is_a_violation(agent, svc):
    d = approved(svc, agent, reviewer(svc))
    with svc.db.write() as session:
        session.execute(update(Agent).where(Agent.slug == agent.slug).values(state="killed"))
    response = report(agent, d)
    assert response.status_code == 423
    assert response.get_json()["error"]["code"] == "agent_killed"
    assert [v["rule"] for v in violations(svc, d["id"])] == ["agent_killed"]


def test_a_malformed_report_is_422_and_records_nothing(agent, svc):
    d = approved(svc, agent, reviewer(svc))
    response = report(agent, d, outcome="maybe")
    assert response.status_code == 422
    assert response.get_json()["error"]["details"][0]["path"] == "/outcome"
    assert violations(svc, d["id"]) == []
    assert report(agent, d).status_code == 201


def test_another_agents_deferral_is_404(make_agent, svc):
    mine, theirs = make_agent("billing-bot"), make_agent("ops-bot", owner="omar")
    d = approved(svc, theirs, reviewer(svc))
    assert report(mine, d).status_code == 404


@pytest.mark.parametrize("n", [6])
def test_racing_reports_record_exactly_one(make_app, make_agent, n):
    app = make_app(agent_rate=0)
    svc = app.extensions["countersign"]
    agent = make_agent()
    d = approved(svc, agent, reviewer(svc))
    codes = []

    def go():
        codes.append(report(agent.on(app), d).status_code)

    threads = [threading.Thread(target=go) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [201] + [409] * (n - 1)
    assert len(violations(svc, d["id"])) == n - 1


def test_the_item_page_shows_the_execution_and_the_violations(app, agent, svc):
    d = approved(svc, agent, reviewer(svc))
    report(agent, d, action_digest="sha256:" + "1" * 64)
    report(agent, d)
    page = Browser(app.test_client(), "rita").get(f"/deferrals/{d['id']}").get_data(as_text=True)
    assert "Executed: succeeded" in page
    assert "1 violation" in page and "digest_mismatch" in page


def test_the_agent_reports_its_own_body_fields_as_untrusted_text(agent, svc, app):
    d = approved(svc, agent, reviewer(svc), refund())
    report(agent, d, result={"note": "<script>alert(1)</script>"})
    page = Browser(app.test_client(), "rita").get(f"/deferrals/{d['id']}").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page
