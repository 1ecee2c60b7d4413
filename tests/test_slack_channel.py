"""Slack as a channel of the notifications core: one message per deferral and stage,
rewritten when the deferral ends (however it was decided), retried through Slack's
outages and rate limits with nothing lost, a refusal dead-lettered, a batch summarised.
Slack is the local stand-in of tests/slack_standin.py."""

from __future__ import annotations

import json

import pytest

from review.notifications.channels.slack_api import MessageRef
from tests.helpers import approved, reviewer, wait_for
from tests.slack_standin import CHANNEL, SIGNING_SECRET, TOKEN, SlackStandIn
from tests.test_notify_email import PUBLIC, critical, defer, rows, sweep


@pytest.fixture
def standin():
    made = SlackStandIn()
    yield made
    made.close()


@pytest.fixture
def slack_app(make_app, standin):
    def build(**overrides):
        return make_app(
            slack_bot_token=TOKEN,
            slack_signing_secret=SIGNING_SECRET,
            slack_channel="#approvals",
            slack_api_url=standin.api_url,
            public_url=PUBLIC,
            agent_rate=0,
            **overrides,
        )

    return build


def shown(standin) -> list[str]:
    return [json.dumps(m["blocks"], ensure_ascii=False) for m in standin.messages.values()]


def test_a_critical_deferral_makes_one_slack_message_with_its_reference_stored(
    slack_app, make_agent, standin
):
    app = slack_app()
    svc = app.extensions["countersign"]
    d = defer(svc, make_agent().on(app), critical())
    sweep(svc)
    sweep(svc)  # a second sweep tells nothing twice
    [posted] = standin.calls_of("chat.postMessage")
    assert posted.args["channel"] == "#approvals"
    [row] = rows(svc, channel="slack")
    assert row.kind == "deferral.waiting" and row.status == "delivered"
    ref = MessageRef.parse(row.provider_ref)
    assert ref is not None and ref.channel == CHANNEL and (ref.channel, ref.ts) in standin.messages
    assert f"{PUBLIC}/deferrals/{d.id}" in shown(standin)[0]
    assert "countersign_approve" in shown(standin)[0]


def test_a_decision_in_the_browser_rewrites_the_message(slack_app, make_agent, standin):
    app = slack_app()
    svc = app.extensions["countersign"]
    agent = make_agent().on(app)
    d = defer(svc, agent, critical())
    sweep(svc)
    [first, second] = reviewer(svc, "rita"), reviewer(svc, "sam")
    from review.reviewing.claims import claim_one
    from review.reviewing.decisions import decide

    claim_one(svc, first, d.id)
    decide(svc, first, d.id, "approve")
    claim_one(svc, second, d.id)
    decide(svc, second, d.id, "approve")
    sweep(svc)
    [update] = standin.calls_of("chat.update")
    assert (update.args["channel"], update.args["ts"]) == next(iter(standin.messages))
    assert "Approved by rita, sam" in shown(standin)[0]
    assert "countersign_approve" not in shown(standin)[0]
    decided = [r for r in rows(svc, channel="slack") if r.kind == "deferral.decided"]
    assert [r.status for r in decided] == ["delivered"]


def test_a_slack_outage_and_its_rate_limit_are_retried_and_nothing_is_lost(
    slack_app, make_agent, standin
):
    app = slack_app(notify_retry_schedule="1,1,1,1")
    svc = app.extensions["countersign"]
    defer(svc, make_agent().on(app), critical())
    standin.fail("chat.postMessage", 1, 500, {"ok": False, "error": "internal_error"})
    standin.fail(
        "chat.postMessage", 1, 429, {"ok": False, "error": "ratelimited"}, **{"Retry-After": "1"}
    )
    standin.fail("chat.postMessage", 1, 200, {"ok": False, "error": "service_unavailable"})
    failures = ["internal_error", "ratelimited", "service_unavailable"]
    sweep(svc)
    # Each failure is recorded and the message kept for a retry. The sweep looks again for
    # retries due once its attempts are in, so on a slow machine a retry 1 s later can
    # fall in this sweep too: the row says which failure it last met.
    [row] = rows(svc, channel="slack")
    assert row.status == "pending" and 1 <= row.attempts <= len(failures)
    assert failures[row.attempts - 1] in row.last_error
    assert len(standin.calls_of("chat.postMessage")) == row.attempts
    wait_for(
        lambda: (sweep(svc), rows(svc, channel="slack")[0].status == "delivered")[1],
        timeout=30,
        interval=0.3,
        message="the Slack message was not delivered after the outage",
    )
    [row] = rows(svc, channel="slack")
    assert row.attempts == 4 and len(standin.calls_of("chat.postMessage")) == 4
    assert len(standin.messages) == 1  # one message: the failed attempts posted nothing


def test_slack_refusing_the_message_dead_letters_it_at_once(slack_app, make_agent, standin):
    app = slack_app()
    svc = app.extensions["countersign"]
    defer(svc, make_agent().on(app), critical())
    standin.fail("chat.postMessage", 1, 200, {"ok": False, "error": "channel_not_found"})
    sweep(svc)
    [row] = rows(svc, channel="slack")
    assert row.status == "dead" and "channel_not_found" in row.last_error
    assert row.attempts == 1


def test_a_deferral_decided_before_its_message_went_out_is_not_posted(
    slack_app, make_agent, standin
):
    app = slack_app()
    svc = app.extensions["countersign"]
    agent = make_agent().on(app)
    approved(svc, agent, reviewer(svc, "rita"), refund_high())
    sweep(svc)
    assert standin.calls_of("chat.postMessage") == []


def refund_high():
    from tests.helpers import refund

    return refund(risk={"score": 60})


def test_many_at_once_are_one_summary_with_the_queue_link_and_no_buttons(
    slack_app, make_agent, standin
):
    app = slack_app(notify_batch_at=2)
    svc = app.extensions["countersign"]
    agent = make_agent().on(app)
    for i in range(3):
        defer(svc, agent, critical(summary=f"Refund <@U0{i}> now"))
    sweep(svc)
    [posted] = standin.calls_of("chat.postMessage")
    blocks = json.dumps(posted.args["blocks"], ensure_ascii=False)
    assert "3 deferrals at critical risk wait for a decision." in posted.args["text"]
    assert f"{PUBLIC}/queue" in blocks and "countersign_approve" not in blocks
    assert "&lt;@U00&gt;" in blocks and "<@U0" not in blocks
    [row] = rows(svc, channel="slack")
    assert row.provider_ref.endswith(":summary") and MessageRef.parse(row.provider_ref) is None


def test_an_escalation_is_a_second_message_and_the_outcome_rewrites_both(
    slack_app, make_agent, standin
):
    import time

    from review.reviewing.claims import claim_one
    from review.reviewing.decisions import decide
    from tests.helpers import refund

    app = slack_app(escalate_after=1)
    svc = app.extensions["countersign"]
    d = defer(svc, make_agent().on(app), refund(risk={"score": 60}))
    sweep(svc)
    time.sleep(1.1)  # past COUNTERSIGN_ESCALATE_AFTER: still unclaimed
    sweep(svc)
    assert [r.kind for r in rows(svc, channel="slack")] == [
        "deferral.waiting",
        "deferral.escalated",
    ]
    first, second = shown(standin)
    assert "Still unclaimed: high-risk deferral" in second and "Still unclaimed" not in first
    rita = reviewer(svc, "rita")
    claim_one(svc, rita, d.id)
    decide(svc, rita, d.id, "reject", "not this customer")
    sweep(svc)
    assert {(c.args["channel"], c.args["ts"]) for c in standin.calls_of("chat.update")} == set(
        standin.messages
    )
    assert all("Rejected by rita: not this customer" in m for m in shown(standin))
