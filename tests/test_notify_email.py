"""E-mail notifications against a real SMTP server (aiosmtpd): what is sent to whom, its
headers, its escaping, its link; the outbox's transaction; one message per stage."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from review.agents import killswitch
from review.agents.killswitch import Actor
from review.models import Agent, Deferral, utcnow
from review.notifications import outbox
from review.notifications.delivery import send_due
from review.notifications.models import Notification
from review.notifications.planning import plan_due
from review.users import find_user, set_email
from tests.helpers import refund
from tests.smtp_server import SmtpServer

PUBLIC = "https://countersign.example.com"


@pytest.fixture
def smtp():
    server = SmtpServer()
    yield server
    server.close()


@pytest.fixture
def mail_app(make_app, smtp):
    return make_app(
        smtp_url=smtp.url,
        mail_from="Countersign <countersign@example.com>",
        public_url=PUBLIC,
        agent_rate=0,
    )


def critical(**changes):
    return refund(risk={"score": 95, "reasons": ["large refund"]}, **changes)


def defer(svc, agent, body) -> Deferral:
    response = agent.defer(body)
    assert response.status_code == 202, response.get_json()
    with svc.db.read() as session:
        return session.get(Deferral, response.get_json()["id"])


def sweep(svc) -> int:
    planned = plan_due(svc)
    send_due(svc, wait_for_them=True)
    return planned


def rows(svc, **where):
    with svc.db.read() as session:
        query = select(Notification)
        for key, value in where.items():
            query = query.where(getattr(Notification, key) == value)
        return session.scalars(query.order_by(Notification.created_at)).all()


def test_a_critical_deferral_is_mailed_once_to_each_reviewer_with_its_link(
    mail_app, make_agent, people, smtp
):
    svc = mail_app.extensions["countersign"]
    agent = make_agent().on(mail_app)
    d = defer(svc, agent, critical())
    assert d.risk_level == "critical"

    assert sweep(svc) == 2  # rita and sam; olivia (the owner) has no address, ada is tier 1
    assert sweep(svc) == 0  # a second sweep tells nobody again
    mails = smtp.messages()
    assert sorted(m["To"] for m in mails) == ["rita@example.com", "sam@example.com"]
    mail = mails[0]
    assert mail["From"] == "Countersign <countersign@example.com>"
    assert mail["Subject"].startswith("[Countersign] critical deferral waits: Refund $740")
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["X-Countersign-Deferral"] == d.id
    assert mail["Message-ID"].startswith("<ntf_")
    body = mail.get_content()
    assert f"{PUBLIC}/deferrals/{d.id}" in body
    assert "Summary (from the agent): Refund $740 to customer C-88319" in body
    [row, _] = rows(svc, channel="email")
    assert row.status == "delivered" and row.provider_ref == row_message_id(row)


def row_message_id(row: Notification) -> str:
    return f"<{row.id}@countersign>"


def test_a_deferral_below_the_level_is_not_mailed(make_app, make_agent, people, smtp):
    app = make_app(smtp_url=smtp.url, mail_from="cs@example.com", notify_level="critical")
    svc = app.extensions["countersign"]
    agent = make_agent().on(app)
    d = defer(svc, agent, refund())
    assert d.risk_level == "high"
    assert sweep(svc) == 0
    assert smtp.messages() == []


def test_agent_text_cannot_add_a_header_and_hidden_characters_show(
    mail_app, make_agent, people, smtp
):
    svc = mail_app.extensions["countersign"]
    agent = make_agent().on(mail_app)
    hostile = "Refund\r\nBcc: evil@attacker.example\r\nX-Evil: 1\npay\u202etxt.exe"
    defer(svc, agent, critical(summary=hostile))
    sweep(svc)
    mails = smtp.messages()
    assert len(mails) == 2
    for mail in mails:
        assert mail["Bcc"] is None and mail["X-Evil"] is None
        _, rcpts, raw = next(r for r in smtp.received if mail["To"] in r[1])
        assert rcpts == [mail["To"]]  # nobody else got it
        subject = mail["Subject"]
        assert "\n" not in subject and "\r" not in subject and "\u202e" not in subject
        assert "Bcc: evil@attacker.example X-Evil: 1 pay txt.exe" in subject
        body = mail.get_content()
        assert "pay⟨U+202E⟩txt.exe" in body and "\u202e" not in body


def test_a_long_summary_is_cut_in_the_subject(mail_app, make_agent, people, smtp):
    svc = mail_app.extensions["countersign"]
    agent = make_agent().on(mail_app)
    defer(svc, agent, critical(summary="x" * 400))
    sweep(svc)
    subject = smtp.messages()[0]["Subject"]
    assert "x" * 79 + "…" in subject and "x" * 81 not in subject


def test_a_notification_written_in_a_rolled_back_transaction_is_not_there(mail_app, make_agent):
    svc = mail_app.extensions["countersign"]
    make_agent()
    with svc.db.write() as session:
        set_email(session, "olivia", "olivia@example.com")

    class Boom(Exception):
        pass

    with pytest.raises(Boom), svc.db.write() as session:
        agent = session.scalar(select(Agent))
        written = outbox.add_agent_flip(
            session, agent, "agent.killed", reason="x", by="ada", now=utcnow()
        )
        assert written  # the row was there inside the transaction
        raise Boom
    assert rows(svc) == []


def test_a_kill_switch_flip_is_mailed_to_the_agents_owners(mail_app, make_agent, people, smtp):
    svc = mail_app.extensions["countersign"]
    agent = make_agent().on(mail_app)
    defer(svc, agent, refund())
    with svc.db.write() as session:
        set_email(session, "olivia", "olivia@example.com")
    killswitch.kill(svc, agent.slug, Actor("user", "ada"), "refunds look wrong")
    [row] = rows(svc, kind="agent.killed", channel="email")
    assert row.address == "olivia@example.com"
    send_due(svc, wait_for_them=True)
    [mail] = smtp.messages()
    assert mail["To"] == "olivia@example.com"
    assert mail["Subject"] == "[Countersign] Agent billing-bot stopped"
    body = mail.get_content()
    assert "Reason: refunds look wrong" in body and "By: ada" in body
    assert "now ended as killed: 1" in body

    killswitch.revive(svc, agent.slug, Actor("user", "ada"), "fixed")
    send_due(svc, wait_for_them=True)
    assert smtp.messages()[-1]["Subject"] == "[Countersign] Agent billing-bot running again"


def test_an_unclaimed_critical_deferral_escalates_to_the_admins_after_the_delay(
    make_app, make_agent, people, smtp
):
    app = make_app(smtp_url=smtp.url, mail_from="cs@example.com", escalate_after=60)
    svc = app.extensions["countersign"]
    d = defer(svc, make_agent().on(app), critical())
    sweep(svc)
    assert sorted(m["To"] for m in smtp.messages()) == ["rita@example.com", "sam@example.com"]
    with svc.db.write() as session:  # the delay has passed
        session.execute(
            update(Deferral)
            .where(Deferral.id == d.id)
            .values(created_at=utcnow() - timedelta(seconds=120))
        )
    assert sweep(svc) == 1
    assert sweep(svc) == 0  # one message per deferral per tier
    mail = smtp.messages()[-1]
    assert mail["To"] == "ada@example.com"
    assert mail["Subject"].startswith("[Countersign] unclaimed for 2 min: Refund $740")
    [escalated] = rows(svc, kind="deferral.escalated")
    assert escalated.tier == 1


def test_a_claimed_deferral_does_not_escalate(make_app, make_agent, people, smtp):
    from review.reviewing.claims import Holder, claim_batch

    app = make_app(smtp_url=smtp.url, mail_from="cs@example.com", escalate_after=60)
    svc = app.extensions["countersign"]
    d = defer(svc, make_agent().on(app), critical())
    with svc.db.read() as session:
        rita = find_user(session, "rita")
    assert claim_batch(svc, Holder(rita.id, "rita", frozenset({"rita"}))) == [d.id]
    with svc.db.write() as session:
        session.execute(
            update(Deferral)
            .where(Deferral.id == d.id)
            .values(created_at=utcnow() - timedelta(seconds=120))
        )
    sweep(svc)
    assert rows(svc, kind="deferral.escalated") == []


def test_many_deferrals_at_once_make_one_message_per_person(mail_app, make_agent, people, smtp):
    svc = mail_app.extensions["countersign"]
    agent = make_agent().on(mail_app)
    ids = [defer(svc, agent, critical(summary=f"Refund {n}")).id for n in range(6)]
    sweep(svc)
    mails = smtp.messages()
    assert sorted(m["To"] for m in mails) == ["rita@example.com", "sam@example.com"]
    assert mails[0]["Subject"] == "[Countersign] 6 deferrals wait for review"
    body = mails[0].get_content()
    assert all(f"{PUBLIC}/deferrals/{i}" in body for i in ids)


def test_a_message_about_a_deferral_decided_before_it_went_out_is_skipped(
    mail_app, make_agent, people, smtp
):
    svc = mail_app.extensions["countersign"]
    agent = make_agent().on(mail_app)
    d = defer(svc, agent, critical())
    plan_due(svc)
    assert agent.post_json(f"/api/v1/deferrals/{d.id}/cancel", {"reason": "x"}).status_code == 200
    send_due(svc, wait_for_them=True)
    assert smtp.messages() == []
    assert {r.status for r in rows(svc)} == {"skipped"}


def test_set_email_refuses_what_is_no_address(app, runner, people):
    result = runner.invoke(args=["users", "set-email", "rita", "rita@example.com\r\nBcc: x@y.z"])
    assert result.exit_code != 0
    result = runner.invoke(args=["users", "set-email", "rita", "rita.new@example.com"])
    assert result.exit_code == 0, result.output
    svc = app.extensions["countersign"]
    with svc.db.read() as session:
        assert find_user(session, "rita").email == "rita.new@example.com"
        assert session.scalar(select(func.count()).select_from(Notification)) == 0
