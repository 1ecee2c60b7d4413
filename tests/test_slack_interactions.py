"""Deciding from Slack: a signed click on Approve, or Reject with a reason in a modal,
decides through the browser's rules; the message then shows the outcome for everyone.
Slack is a local stand-in speaking its wire format (tests/slack_standin.py); the agent's
callback goes to a real HTTP receiver; the worker is rq's, run in bursts."""

from __future__ import annotations

import json
import time

import pytest
from standardwebhooks.webhooks import Webhook

from review.notifications.delivery import send_due
from review.notifications.planning import plan_due
from review.users import create_user
from tests.helpers import audit_events, refund, work_until
from tests.slack_standin import SIGNING_SECRET, TOKEN, SlackAccount, SlackSender, SlackStandIn

APPROVE, REJECT = "countersign_approve", "countersign_reject"
RITA = SlackAccount("U0RITA", "rita", "Rita@Example.com")
SAM = SlackAccount("U0SAM", "sam", "sam@example.com")
ALICE = SlackAccount("U0ALICE", "alice", "alice@example.com")  # the deferrals' principal
AUDREY = SlackAccount("U0AUDREY", "audrey", "audrey@example.com")
STRANGER = SlackAccount("U0STRANGER", "stranger", "nobody@elsewhere.example")
GONE = SlackAccount("U0GONE", "gone", None, deleted=True)
FAY = SlackAccount("U0FAY", "fay", "fay@example.com")  # a reviewer outside the finance group


class SlackWorld:
    def __init__(self, world, standin: SlackStandIn):
        self.app, self.svc, self.agent, self.receiver = (
            world.app,
            world.svc,
            world.agent,
            world.receiver,
        )
        self.standin = standin
        self.slack = SlackSender(self.app.test_client(), standin)

    def defer(self, **changes) -> str:
        """A deferral from the agent, told to Slack by the notifications core (its sweep
        plans the message, its sender posts it)."""
        posted = len(self.standin.messages)
        d_id = self.agent.defer(refund(**changes)).get_json()["id"]
        plan_due(self.svc)
        send_due(self.svc, wait_for_them=True)
        assert len(self.standin.messages) == posted + 1
        return d_id

    def deferral(self, d_id: str) -> dict:
        return self.agent.get(f"/api/v1/deferrals/{d_id}").get_json()

    def work(self, until, timeout: float = 15.0) -> None:
        work_until(self.app, self.svc, until, timeout)

    def message(self) -> dict:
        return list(self.standin.messages.values())[-1]

    def message_text(self) -> str:
        return json.dumps(self.message()["blocks"], ensure_ascii=False)


@pytest.fixture
def standin():
    made = SlackStandIn([RITA, SAM, ALICE, AUDREY, STRANGER, GONE, FAY])
    yield made
    made.close()


@pytest.fixture
def make_slack_world(callback_world, standin):
    """Factory: the agent's callbacks go to a real receiver, Slack is the stand-in; rita,
    sam, alice and fay are reviewers, audrey an auditor (each name@example.com)."""

    def build(**overrides) -> SlackWorld:
        world = callback_world(
            slack_bot_token=TOKEN,
            slack_signing_secret=SIGNING_SECRET,
            slack_channel="#approvals",
            slack_api_url=standin.api_url,
            public_url="https://countersign.example.com",
            **overrides,
        )
        with world.svc.db.write() as session:
            for name, role in (
                ("rita", "reviewer"),
                ("sam", "reviewer"),
                ("alice", "reviewer"),
                ("fay", "reviewer"),
                ("audrey", "auditor"),
            ):
                create_user(
                    session, name, role, "correct horse battery", email=f"{name}@example.com"
                )
        return SlackWorld(world, standin)

    return build


@pytest.fixture
def slack_world(make_slack_world):
    return make_slack_world()


ROUTED = """
[[rule]]
id = "refund"
kind = "tool"
match = ["billing.refund"]
points = 60
group = "finance"
quorum = 2
detail = "{tool} moves money"
"""


def test_a_routed_deferral_is_decided_by_its_groups_members_only(make_slack_world, tmp_path):
    from review.groups import add_member, create_group

    policy = tmp_path / "policy.toml"
    policy.write_text(ROUTED)
    w = make_slack_world(policy_file=str(policy))
    with w.svc.db.write() as session:
        create_group(session, "finance")
        for name in ("rita", "sam"):
            add_member(session, "finance", name)
    d_id = w.defer()
    assert w.deferral(d_id)["route"]["group"] == "finance"

    w.slack.click(FAY, APPROVE)
    w.work(lambda: w.standin.replies)
    assert "routed to the reviewer group finance" in w.standin.replies[0]["text"]
    assert w.deferral(d_id)["route"]["approvals"] == []

    w.slack.click(RITA, APPROVE)
    assert w.deferral(d_id)["route"]["approvals"] == ["rita"]
    w.work(lambda: "1 of 2 approvals — rita" in w.message_text())
    w.slack.click(SAM, APPROVE)
    assert w.deferral(d_id)["status"] == "approved"
    w.work(lambda: "Approved by rita, sam" in w.message_text() and w.receiver.requests)


HIGH = {"risk": {"score": 60, "reasons": ["refund"]}}
CRITICAL = {"risk": {"score": 95, "reasons": ["big refund"]}}


def test_approve_from_slack_decides_updates_the_message_and_calls_the_agent_back(slack_world):
    w = slack_world
    d_id = w.defer(**HIGH)
    response = w.slack.click(RITA, APPROVE)
    assert response.status_code == 200 and response.get_data() == b""
    assert w.deferral(d_id)["status"] == "approved"
    assert w.deferral(d_id)["decision"]["decided_by"] == ["rita"]
    assert w.standin.calls_of("chat.update") == []  # reporting waits for the worker

    w.work(lambda: w.standin.calls_of("chat.update") and len(w.receiver.requests) == 1)
    # Updated by the click's follow-up and by the core's deferral.decided hook: both
    # rewrite the one message from the deferral as it is, on its stored channel and ts.
    [posted] = w.standin.calls_of("chat.postMessage")
    for update in w.standin.calls_of("chat.update"):
        assert (update.args["channel"], update.args["ts"]) == list(w.standin.messages)[0]
        assert update.headers["Authorization"] == f"Bearer {TOKEN}"
    assert posted.args["channel"] == "#approvals"
    assert "Approved by rita" in w.message_text()
    assert APPROVE not in w.message_text() and REJECT not in w.message_text()
    headers, body, _path = w.receiver.requests[0]
    callback = Webhook(w.agent.secret).verify(body, {k.lower(): v for k, v in headers.items()})
    assert callback["data"]["id"] == d_id and callback["data"]["status"] == "approved"
    [users_info] = w.standin.calls_of("users.info")
    assert users_info.args["user"] == RITA.id
    assert audit_events(w.svc, "deferral.approved", deferral_id=d_id)[0].actor_id == "rita"


def test_a_critical_deferral_needs_two_people_and_the_message_counts_them(slack_world):
    w = slack_world
    d_id = w.defer(**CRITICAL)
    assert w.slack.click(RITA, APPROVE).status_code == 200
    assert w.deferral(d_id)["status"] == "pending"
    w.work(lambda: w.standin.calls_of("chat.update"))
    assert "1 of 2 approvals — rita" in w.message_text()
    assert APPROVE in w.message_text()  # the second approver still needs the button

    w.slack.click(RITA, APPROVE)  # the same person again
    assert w.deferral(d_id)["status"] == "pending"
    w.work(lambda: w.standin.replies)
    assert "gave it approval 1 of 2" in w.standin.replies[-1]["text"]
    assert w.standin.replies[-1]["response_type"] == "ephemeral"

    w.slack.click(SAM, APPROVE)
    assert w.deferral(d_id)["status"] == "approved"
    assert w.deferral(d_id)["decision"]["decided_by"] == ["rita", "sam"]
    w.work(lambda: "Approved by rita, sam" in w.message_text())


@pytest.mark.parametrize(
    ("account", "why"),
    [
        (ALICE, "your own behalf"),
        (STRANGER, "No Countersign user has the e-mail nobody@elsewhere.example"),
        (AUDREY, "is an auditor, who may not approve or reject"),
        (GONE, "Slack gives no e-mail address for your account"),
    ],
)
def test_people_who_may_not_decide_are_told_why_and_nothing_changes(slack_world, account, why):
    w = slack_world
    d_id = w.defer(**HIGH)
    assert w.slack.click(account, APPROVE).status_code == 200
    assert w.deferral(d_id)["status"] == "pending"
    w.work(lambda: w.standin.replies)
    [reply] = w.standin.replies
    assert why in reply["text"] and reply["text"].startswith("Not approved")
    assert reply["response_type"] == "ephemeral" and reply["replace_original"] is False


def test_a_disabled_user_is_refused(slack_world):
    from review.users import disable_user

    w = slack_world
    d_id = w.defer(**HIGH)
    with w.svc.db.write() as session:
        disable_user(session, "rita", actor=("system", "cli"))
    w.slack.click(RITA, APPROVE)
    assert w.deferral(d_id)["status"] == "pending"
    w.work(lambda: w.standin.replies)
    assert "The Countersign user rita is disabled" in w.standin.replies[0]["text"]


def test_a_second_click_after_the_decision_says_who_decided(slack_world):
    w = slack_world
    d_id = w.defer(**HIGH)
    w.slack.click(RITA, APPROVE)
    w.slack.click(SAM, APPROVE)
    assert w.deferral(d_id)["decision"]["decided_by"] == ["rita"]
    w.work(lambda: w.standin.replies)
    assert w.standin.replies[0]["text"] == "Not approved: Already decided: approved by rita."


def test_reject_opens_a_modal_and_its_reason_rejects(slack_world):
    w = slack_world
    d_id = w.defer(**HIGH)
    assert w.slack.click(SAM, REJECT).status_code == 200
    assert w.deferral(d_id)["status"] == "pending"  # nothing is decided before the reason
    [opened] = w.standin.calls_of("views.open")
    view = opened.args["view"]
    assert view["type"] == "modal" and json.loads(view["private_metadata"])["deferral"] == d_id

    empty = w.slack.submit_reason(SAM, "   ")
    assert empty.get_json()["response_action"] == "errors"
    response = w.slack.submit_reason(SAM, "wrong customer")
    assert response.status_code == 200 and response.get_data() == b""
    assert w.deferral(d_id)["status"] == "rejected"
    assert w.deferral(d_id)["decision"]["reason"] == "wrong customer"
    w.work(lambda: "Rejected by sam: wrong customer" in w.message_text())
    assert REJECT not in w.message_text()


def test_a_refused_rejection_keeps_the_modal_open_with_the_reason(slack_world):
    w = slack_world
    w.defer(**HIGH)
    w.slack.click(STRANGER, REJECT)
    answer = w.slack.submit_reason(STRANGER, "no").get_json()
    assert answer["response_action"] == "errors"
    assert "No Countersign user has the e-mail" in answer["errors"]["reason"]


def test_another_reviewers_live_claim_is_respected(slack_world):
    from review.reviewing.claims import claim_batch
    from tests.helpers import reviewer

    w = slack_world
    d_id = w.defer(**HIGH)
    claim_batch(w.svc, reviewer(w.svc, "robin"))
    w.slack.click(RITA, APPROVE)
    assert w.deferral(d_id)["status"] == "in_review"
    w.work(lambda: w.standin.replies)
    assert "Another reviewer holds it" in w.standin.replies[0]["text"]


def test_a_killed_agents_deferral_cannot_be_approved_from_slack(slack_world):
    w = slack_world
    d_id = w.defer(**HIGH)
    from review.agents.killswitch import Actor, kill

    kill(w.svc, "billing-bot", Actor("user", "olivia"), "runaway")
    w.slack.click(RITA, APPROVE)
    assert w.deferral(d_id)["status"] == "killed"
    w.work(lambda: w.standin.replies)
    assert w.standin.replies[0]["text"].startswith("Not approved: Already decided: killed")


# --- the signature --------------------------------------------------------------------


def _payload(w):
    from tests.slack_standin import block_actions

    (channel, ts), message = next(iter(w.standin.messages.items()))
    button = message["blocks"][-1]["elements"][0]
    return block_actions(w.standin, RITA, channel, ts, message, button)


def test_a_bad_signature_an_old_timestamp_or_a_replay_is_401_and_decides_nothing(slack_world):
    from urllib.parse import urlencode

    w = slack_world
    d_id = w.defer(**HIGH)
    body = urlencode({"payload": json.dumps(_payload(w))}).encode()
    wrong = SlackSender(w.slack.client, w.standin, secret="not-the-secret")
    assert wrong.post({}, headers=wrong.signed(body)).status_code == 401  # body differs too
    assert (
        w.slack.client.post(w.slack.path, data=body, headers=wrong.signed(body)).status_code == 401
    )
    stale = w.slack.signed(body, at=time.time() - 301)
    assert w.slack.client.post(w.slack.path, data=body, headers=stale).status_code == 401
    future = w.slack.signed(body, at=time.time() + 301)
    assert w.slack.client.post(w.slack.path, data=body, headers=future).status_code == 401
    for broken in ({}, {"X-Slack-Signature": "v0=zz"}, {"X-Slack-Request-Timestamp": "１２"}):
        headers = {**w.slack.signed(body), **broken}
        if not broken:
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
        assert w.slack.client.post(w.slack.path, data=body, headers=headers).status_code == 401
    assert w.deferral(d_id)["status"] == "pending"

    good = w.slack.signed(body)
    assert w.slack.client.post(w.slack.path, data=body, headers=good).status_code == 200
    again = w.slack.client.post(w.slack.path, data=body, headers=good)
    assert again.status_code == 401 and again.get_json() == {"error": "Not a valid Slack request."}
    assert w.deferral(d_id)["status"] == "approved"
    assert len(audit_events(w.svc, "deferral.approved")) == 1


def test_a_signed_body_that_is_no_interaction_is_400(slack_world):
    w = slack_world
    for body in (b"payload=not-json", b"nothing=here", b"payload=%5B%5D", b"payload=%FF"):
        response = w.slack.client.post(w.slack.path, data=body, headers=w.slack.signed(body))
        assert response.status_code == 400, body
    raw = b"\xff\xfe"  # not UTF-8: no Slack request, whatever its signature
    assert (
        w.slack.client.post(w.slack.path, data=raw, headers=w.slack.signed(raw)).status_code == 401
    )


def test_without_slack_settings_the_route_is_404(client):
    assert client.post("/integrations/slack/interactions", data=b"payload={}").status_code == 404


def test_a_rejection_submitted_after_someone_decided_says_who(slack_world):
    w = slack_world
    d_id = w.defer(**HIGH)
    w.slack.click(SAM, REJECT)
    w.slack.click(RITA, APPROVE)
    answer = w.slack.submit_reason(SAM, "too late").get_json()
    assert answer["errors"]["reason"] == "Not rejected: Already decided: approved by rita."
    assert w.deferral(d_id)["status"] == "approved"


def test_the_link_button_is_acknowledged_and_does_nothing(slack_world):
    w = slack_world
    d_id = w.defer(**HIGH)
    response = w.slack.click(RITA, "countersign_open")
    assert response.status_code == 200 and response.get_data() == b""
    assert w.deferral(d_id)["status"] == "pending" and w.standin.calls_of("users.info") == []


def test_with_undo_on_a_slack_decision_is_held_then_takes_effect(make_slack_world):
    w = make_slack_world(undo_seconds=1)
    d_id = w.defer(**HIGH)
    w.slack.click(RITA, APPROVE)
    assert w.deferral(d_id)["status"] == "in_review"  # held: nothing has left the server
    assert w.receiver.requests == []
    w.work(lambda: w.standin.replies and "Approved by rita" in w.message_text())
    assert w.standin.replies[0]["text"].startswith("Approved: it takes effect in ")
    assert w.deferral(d_id)["status"] == "approved"
    w.work(lambda: w.receiver.requests)


def test_a_held_approval_can_be_undone_from_the_reply(make_slack_world):
    from review.reviewing import undo
    from tests.slack_standin import block_actions

    w = make_slack_world(undo_seconds=20)
    d_id = w.defer(**HIGH)
    w.slack.click(RITA, APPROVE)
    w.work(lambda: w.standin.replies)
    [reply] = w.standin.replies
    assert reply["text"].startswith("Approved: it takes effect in ")
    [button] = reply["blocks"][-1]["elements"]
    assert (button["action_id"], button["value"]) == ("countersign_undo", d_id)
    shown = {"type": "message", "text": reply["text"], "blocks": reply["blocks"], "ts": "1.1"}
    channel, ts = next(iter(w.standin.messages))
    payload = block_actions(w.standin, RITA, channel, ts, shown, button)
    payload["container"]["is_ephemeral"] = True
    assert w.slack.post(payload).status_code == 200
    w.work(lambda: len(w.standin.replies) == 2)
    assert w.standin.replies[1]["text"].startswith("Undone: nothing was decided.")
    with w.svc.db.read() as session:  # nothing is left to take effect
        assert undo.held_decision(session, d_id) is None
    assert w.deferral(d_id)["status"] == "in_review" and w.receiver.requests == []
