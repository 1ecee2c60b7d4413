"""Cancel (4.3) and the kill-switch status the agent polls (4.5)."""

import json

from sqlalchemy import select

from review.agents.killswitch import Actor, kill
from review.models import AuditEvent


def test_an_agent_cancels_its_pending_deferral(agent, svc):
    d = agent.defer().get_json()
    response = agent.post_json(f"/api/v1/deferrals/{d['id']}/cancel", {"reason": "user withdrew"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "cancelled"
    decision = body["decision"]
    assert decision["outcome"] == "cancelled" and decision["reason"] == "user withdrew"
    assert decision["decided_by"] == [] and decision["valid_until"] is None
    assert decision["decided_at"].endswith("Z")
    with svc.db.read() as session:
        event = session.scalars(
            select(AuditEvent).where(
                AuditEvent.deferral_id == d["id"], AuditEvent.event_type == "deferral.cancelled"
            )
        ).one()
    assert json.loads(event.payload)["reason"] == "user withdrew"
    assert event.actor_kind == "agent" and event.actor_id == agent.slug


def test_cancel_needs_a_reason(agent):
    d = agent.defer().get_json()
    response = agent.post_json(f"/api/v1/deferrals/{d['id']}/cancel", {})
    assert response.status_code == 422
    assert response.get_json()["error"]["details"] == [{"path": "/reason", "message": "required"}]
    assert agent.get(f"/api/v1/deferrals/{d['id']}").get_json()["status"] == "pending"


def test_the_status_endpoint_reports_the_kill_switch(agent, svc):
    status = agent.get(f"/api/v1/agents/{agent.slug}/status")
    assert status.status_code == 200
    body = status.get_json()
    assert body == {
        "agent": "billing-bot",
        "state": "active",
        "changed_at": body["changed_at"],
        "changed_by": "cli",
        "reason": "created",
    }
    kill(svc, agent.slug, Actor("user", "olivia"), "runaway")
    killed = agent.get(f"/api/v1/agents/{agent.slug}/status").get_json()
    assert killed["state"] == "killed" and killed["changed_by"] == "olivia"
    assert killed["reason"] == "runaway"


def test_the_status_endpoint_needs_a_signature(agent, client):
    assert client.get(f"/api/v1/agents/{agent.slug}/status").status_code == 401
