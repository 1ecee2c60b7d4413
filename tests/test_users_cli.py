"""`users set-role NAME ROLE`: the new role, audited, and the user's sessions end (issue 18)."""

import json

import pytest
from sqlalchemy import select

from review.audit.verify import verify_chain
from review.models import AuditEvent, User
from review.users import create_user
from tests.helpers import Browser

PASSWORD = "correct horse battery"


@pytest.fixture
def rita(svc):
    with svc.db.write() as session:
        create_user(session, "rita", "reviewer", PASSWORD)


def role_events(svc) -> list[tuple[str, dict]]:
    with svc.db.read() as session:
        rows = session.execute(
            select(AuditEvent.event_type, AuditEvent.payload)
            .where(AuditEvent.event_type == "user.role_changed")
            .order_by(AuditEvent.seq)
        )
        return [(event_type, json.loads(payload)) for event_type, payload in rows]


def test_it_changes_the_role_audits_it_and_ends_the_users_sessions(app, svc, runner, rita):
    browser = Browser(app.test_client(), "rita")
    assert browser.client.get("/queue").status_code == 200
    result = runner.invoke(args=["users", "set-role", "rita", "auditor"])
    assert result.exit_code == 0, result.output
    assert "rita is now auditor" in result.output
    with svc.db.read() as session:
        assert session.scalar(select(User.role).where(User.username == "rita")) == "auditor"
        assert verify_chain(session).ok
    gone = browser.client.get("/queue")
    assert gone.status_code == 302 and "/login" in gone.headers["Location"]
    assert role_events(svc) == [
        (
            "user.role_changed",
            {"username": "rita", "role": "auditor", "previous_role": "reviewer"},
        )
    ]


def test_it_changes_nothing_when_the_role_is_the_same_and_refuses_bad_input(svc, runner, rita):
    same = runner.invoke(args=["users", "set-role", "rita", "reviewer"])
    assert same.exit_code == 0 and "already reviewer" in same.output
    nobody = runner.invoke(args=["users", "set-role", "nobody", "admin"])
    assert nobody.exit_code == 1 and "no user 'nobody'" in nobody.output
    bad = runner.invoke(args=["users", "set-role", "rita", "overlord"])
    assert bad.exit_code == 2 and "overlord" in bad.output
    assert role_events(svc) == []
