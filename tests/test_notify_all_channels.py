"""The issue's "done when", end to end on real local servers: a critical deferral makes one
e-mail (aiosmtpd), one Slack message (the stand-in) and one webhook (verified by the
standardwebhooks package); unclaimed, it escalates after the delay to the admins on all
three; its decision updates Slack and the webhook, and mails nobody."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import update
from standardwebhooks import Webhook

from review.models import Deferral, utcnow
from review.notifications.secret import webhook_secret
from review.reviewing.claims import Holder, claim_one
from review.reviewing.decisions import decide
from review.users import create_user
from tests.slack_standin import SIGNING_SECRET, TOKEN, SlackStandIn
from tests.smtp_server import SmtpServer
from tests.test_notify_email import PUBLIC, critical, defer, sweep


@pytest.fixture
def servers(receiver_factory):
    smtp, slack = SmtpServer(), SlackStandIn()
    yield smtp, slack, receiver_factory()
    smtp.close()
    slack.close()


def test_a_critical_deferral_reaches_every_channel_once_and_escalates_after_the_delay(
    make_app, make_agent, servers
):
    smtp, slack, hook = servers
    app = make_app(
        smtp_url=smtp.url,
        mail_from="cs@example.com",
        slack_bot_token=TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_channel="#approvals",
        slack_api_url=slack.api_url,
        notify_webhook_url=hook.url,
        public_url=PUBLIC,
        escalate_after=60,
        agent_rate=0,
    )
    svc = app.extensions["countersign"]
    with svc.db.write() as session:
        rita = create_user(
            session, "rita", "reviewer", "correct horse battery", email="rita@example.com"
        )
        create_user(session, "ada", "admin", "correct horse battery", email="ada@example.com")
        session.flush()
        rita_id = rita.id
    d = defer(svc, make_agent().on(app), critical())

    sweep(svc)
    sweep(svc)
    assert [m["To"] for m in smtp.messages()] == ["rita@example.com"]
    assert len(slack.calls_of("chat.postMessage")) == 1
    assert len(hook.requests) == 1
    secret = webhook_secret(svc)
    headers, body, _ = hook.requests[0]
    event = Webhook(secret).verify(body, {k.lower(): v for k, v in headers.items()})
    assert event["type"] == "deferral.waiting" and event["data"]["deferrals"][0]["id"] == d.id

    with svc.db.write() as session:  # unclaimed past the delay
        session.execute(
            update(Deferral)
            .where(Deferral.id == d.id)
            .values(created_at=utcnow() - timedelta(seconds=120))
        )
    sweep(svc)
    sweep(svc)
    assert [m["To"] for m in smtp.messages()] == ["rita@example.com", "ada@example.com"]
    assert len(slack.calls_of("chat.postMessage")) == 2
    assert [json.loads(b)["type"] for _, b, _ in hook.requests] == [
        "deferral.waiting",
        "deferral.escalated",
    ]

    holder = Holder(rita_id, "rita", frozenset({"rita"}))
    claim_one(svc, holder, d.id)
    decide(svc, holder, d.id, "reject", "not today", undo_seconds=0)
    sweep(svc)
    assert len(smtp.messages()) == 2  # e-mail sends nothing on a decision
    assert len(slack.calls_of("chat.update")) == 2  # both Slack messages show the outcome
    decided = json.loads(hook.requests[-1][1])
    assert decided["type"] == "deferral.decided"
    assert decided["data"]["deferrals"][0]["status"] == "rejected"
