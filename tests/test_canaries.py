"""Canaries (issue 15): known-bad test deferrals seeded by admins.

They reach reviewers like any item (same queue, same card, the agent's name), never
reach an agent (no callback, 404 to its signed reads), are closed and revealed at once
when decided, recorded as `canary.caught` / `canary.missed`, and stay out of the
agent's figures. The browser's half is in tests/test_canaries_browser.py.
"""

from __future__ import annotations

import json
import random
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from review.agents.killswitch import Actor, kill
from review.agents.overview import agent_detail
from review.canaries.deciding import MISSED_MESSAGE
from review.canaries.kinds import KINDS
from review.canaries.listing import recent_canaries
from review.canaries.seeding import SeedRefused, seed_canaries
from review.errors import NotFound
from review.models import Agent, Canary, Deferral, OutboxEvent, utcnow
from review.reviewing.claims import claim_batch
from review.reviewing.decisions import decide
from review.reviewing.edits import edit_and_approve
from tests.helpers import audit_events, count_rows, logged_in

ADMIN = ("user", "ada")


def _seed(svc, **kwargs):
    kwargs.setdefault("rng", random.Random(7))
    return seed_canaries(svc, ADMIN, **kwargs)


def _claimed_ago(svc, seconds: float) -> None:
    with svc.db.write() as session:
        session.execute(
            update(Deferral)
            .where(Deferral.status == "in_review")
            .values(claimed_at=utcnow() - timedelta(seconds=seconds))
        )


def test_a_canary_enters_the_queue_as_the_agents_with_its_seeding_recorded(svc, agent, people):
    agent.defer()  # the agent's own request: the canary takes its looks from it
    (seeded,) = _seed(svc, agent_slug="billing-bot", kind="refund-unknown-account")
    with svc.db.read() as session:
        d = session.get(Deferral, seeded.deferral_id)
        row = session.get(Canary, d.id)
        assert d.status == "pending" and d.agent.slug == "billing-bot"
        assert d.canary == "refund-unknown-account" and d.tool == "billing.refund"
        assert d.principal_id == "alice@example.com"  # the agent's own principal
        assert d.trace_url.startswith("https://traces.example.com/t/")
        assert d.risk_factors, "scored by the policy like any request"
        assert row.seeded_by == "ada" and row.outcome is None
    seeded_event, evaluated = audit_events(svc, deferral_id=seeded.deferral_id)
    assert (seeded_event.event_type, seeded_event.actor_kind, seeded_event.actor_id) == (
        "canary.seeded",
        "user",
        "ada",
    )
    assert json.loads(seeded_event.payload)["canary"] == {"kind": "refund-unknown-account"}
    assert evaluated.event_type == "deferral.evaluated" and evaluated.actor_id == "ada"


def test_canaries_take_no_place_under_the_agents_pending_cap(make_app, make_agent, people):
    app = make_app(agent_rate=0, agent_max_pending=2)
    svc = app.extensions["countersign"]
    agent = make_agent().on(app)
    assert agent.defer().status_code == 202  # the agent's own: one of its two places
    seeded = _seed(svc, agent_slug="billing-bot", count=3)
    assert agent.defer().status_code == 202  # three canaries did not fill the second
    assert agent.defer().status_code == 429  # its own two did
    with svc.db.read() as session:
        assert session.scalar(select(Agent.undecided).where(Agent.slug == "billing-bot")) == 2
    rita = reviewer_holder(svc, "rita")
    claim_batch(svc, rita)
    for canary in seeded:  # deciding canaries leaves the count alone too
        decide(svc, rita, canary.deferral_id, "reject", reason="a canary", undo_seconds=0)
    with svc.db.read() as session:
        assert session.scalar(select(Agent.undecided).where(Agent.slug == "billing-bot")) == 2


def test_every_kind_seeds_and_no_two_canaries_share_an_action(svc, agent, people):
    seeded = [_seed(svc, agent_slug="billing-bot", kind=k)[0] for k in KINDS]
    seeded += _seed(svc, agent_slug="billing-bot", count=4)
    with svc.db.read() as session:
        digests = session.scalars(
            select(Deferral.action_digest).where(Deferral.canary.is_not(None))
        ).all()
    assert len(set(digests)) == len(seeded) == len(KINDS) + 4


def test_seeding_refuses_bad_requests_with_a_clear_message(svc, agent, people):
    with pytest.raises(SeedRefused, match="between 1 and 50"):
        _seed(svc, count=0)
    with pytest.raises(SeedRefused, match="No kind 'nope'"):
        _seed(svc, kind="nope")
    with pytest.raises(NotFound, match="no active agent 'ghost'"):
        _seed(svc, agent_slug="ghost")
    assert count_rows(svc, Canary) == 0


def test_a_reviewer_is_never_the_principal_of_a_canary(svc, agent, people):
    agent.defer(dict(_refund_on_behalf_of("rita@example.com")))
    (seeded,) = _seed(svc, agent_slug="billing-bot")
    with svc.db.read() as session:
        assert session.get(Deferral, seeded.deferral_id).principal_id != "rita@example.com"


def _refund_on_behalf_of(who: str) -> dict:
    from tests.helpers import refund

    return refund(on_behalf_of={"id": who})


def test_approving_a_canary_is_recorded_as_missed_closed_and_never_sent(callback_world, people):
    world = callback_world()
    svc = world.svc
    (seeded,) = _seed(svc, agent_slug="billing-bot", kind="delete-backups")
    rita = reviewer_holder(svc, "rita")
    claim_batch(svc, rita)
    _claimed_ago(svc, 20)
    decided = decide(svc, rita, seeded.deferral_id, "approve", seen_ms=9000)
    assert decided.canary == "missed" and decided.status == "rejected"
    assert decided.message.startswith(MISSED_MESSAGE)
    with svc.db.read() as session:
        d = session.get(Deferral, seeded.deferral_id)
        row = session.get(Canary, d.id)
        assert d.status == "rejected" and d.receipt is None and d.valid_until is None
        assert d.decided_by == ["rita"] and "Canary approved by rita" in d.decision_reason
        assert (row.outcome, row.decided_by, row.seconds_in_view) == ("missed", "rita", 9.0)
    assert count_rows(svc, OutboxEvent) == 0
    (event,) = audit_events(svc, "canary.missed")
    payload = json.loads(event.payload)
    assert payload["verdict"] == "approve" and payload["seconds_in_view"] == 9.0
    assert audit_events(svc, "deferral.approved") == []
    world.work_until(lambda: True)
    assert world.receiver.requests == []
    assert world.agent.get(f"/api/v1/deferrals/{seeded.deferral_id}").status_code == 404


def reviewer_holder(svc, name: str):
    from review.reviewing.claims import Holder

    with svc.db.read() as session:
        from review.models import User

        user = session.scalar(select(User).where(User.username == name))
        return Holder(user.id, name, frozenset({name, user.email}))


def test_rejecting_a_canary_is_recorded_as_caught(svc, agent, people):
    (seeded,) = _seed(svc, agent_slug="billing-bot")
    rita = reviewer_holder(svc, "rita")
    claim_batch(svc, rita)
    decided = decide(svc, rita, seeded.deferral_id, "reject", "Against policy", seen_ms=500)
    assert decided.canary == "caught" and "Well caught" in decided.message
    assert decided.fast
    (event,) = audit_events(svc, "canary.caught")
    assert json.loads(event.payload)["reason"] == "Against policy"
    with svc.db.read() as session:
        (row,) = recent_canaries(session)
    assert row.outcome == "caught" and row.decided_by == "rita"


def test_the_first_of_two_approvals_of_a_canary_is_already_a_miss(svc, agent, people):
    (seeded,) = _seed(svc, agent_slug="billing-bot", kind="grant-admin-external")
    with svc.db.write() as session:  # whatever it scored, it needs two approvers now
        session.execute(
            update(Deferral)
            .where(Deferral.id == seeded.deferral_id)
            .values(risk_level="critical", required_approvals=2)
        )
    rita = reviewer_holder(svc, "rita")
    claim_batch(svc, rita)
    decided = decide(svc, rita, seeded.deferral_id, "approve")
    assert decided.canary == "missed" and decided.status == "rejected"


def test_editing_then_approving_a_canary_is_a_miss(svc, agent, people):
    (seeded,) = _seed(svc, agent_slug="billing-bot", kind="vendor-new-bank")
    rita = reviewer_holder(svc, "rita")
    claim_batch(svc, rita)
    with svc.db.read() as session:
        args = dict(session.get(Deferral, seeded.deferral_id).action["args"])
    args["amount"] = 10
    decided = edit_and_approve(svc, rita, seeded.deferral_id, args)
    assert decided.canary == "missed"
    with svc.db.read() as session:
        assert session.get(Deferral, seeded.deferral_id).original_action is None  # no edit kept


def test_the_kill_switch_ends_a_canary_without_a_callback(callback_world, people):
    world = callback_world()
    svc = world.svc
    (seeded,) = _seed(svc, agent_slug="billing-bot")
    kill(svc, "billing-bot", Actor("user", "ada"), "test")
    with svc.db.read() as session:
        assert session.get(Deferral, seeded.deferral_id).status == "killed"
        events = session.scalars(select(OutboxEvent.event_type)).all()
    assert events == ["agent.killed"]  # the agent hears of its switch, not of the canary


def test_a_canary_is_not_in_its_agents_figures(svc, agent, people):
    agent.defer()
    (seeded,) = _seed(svc, agent_slug="billing-bot")
    rita = reviewer_holder(svc, "rita")
    claim_batch(svc, rita)
    decide(svc, rita, seeded.deferral_id, "reject", "no")
    with svc.db.read() as session:
        detail = agent_detail(session, session.scalar(select(Agent)))
    assert detail.outcomes == {"in_review": 1}  # the agent's own, claimed; no "rejected"


def test_a_decided_canary_is_not_an_earlier_decision_on_other_cards(svc, agent, people):
    (seeded,) = _seed(svc, agent_slug="billing-bot", kind="delete-backups")
    rita = reviewer_holder(svc, "rita")
    claim_batch(svc, rita)
    decide(svc, rita, seeded.deferral_id, "reject", "no")
    with svc.db.read() as session:
        canary = session.get(Deferral, seeded.deferral_id)
        body = {
            "action": canary.action,
            "summary": canary.summary,
            "on_behalf_of": {"id": "x@example.com"},
            "resource": {"type": canary.resource_type, "id": canary.resource_id},
        }
    again = agent.defer(body).get_json()["id"]
    from review.reviewing.history import earlier_decisions

    with svc.db.read() as session:
        assert earlier_decisions(session, [session.get(Deferral, again)]) == {again: []}


def test_reviewers_see_an_open_canary_as_the_agents_own_and_auditors_see_it_as_is(
    app, svc, agent, people
):
    (seeded,) = _seed(svc, agent_slug="billing-bot")
    agent.defer()
    rita = logged_in(app, "rita")
    queue = rita.get("/queue").get_data(as_text=True)
    page = rita.get(f"/deferrals/{seeded.deferral_id}").get_data(as_text=True)
    for html in (queue, page):
        assert "canary" not in html.lower()
    assert "deferral.received</strong> by agent:billing-bot" in page
    audrey = logged_in(app, "audrey")
    seen = audrey.get(f"/deferrals/{seeded.deferral_id}").get_data(as_text=True)
    assert "canary.seeded</strong> by user:ada" in seen


def test_the_audit_chain_verifies_with_canaries_in_it(app, svc, agent, people, runner):
    (seeded,) = _seed(svc, agent_slug="billing-bot")
    rita = reviewer_holder(svc, "rita")
    claim_batch(svc, rita)
    decide(svc, rita, seeded.deferral_id, "approve")
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 0 and result.output.startswith("OK"), result.output


def test_the_cli_seeds_and_lists_canaries(app, svc, agent, people, runner):
    result = runner.invoke(
        args=["canaries", "seed", "--agent", "billing-bot", "--count", "2", "--by", "ada"]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 2 and all(" billing-bot " in line for line in lines)
    listed = runner.invoke(args=["canaries", "list"])
    assert listed.output.count(" open") == 2
    refused = runner.invoke(args=["canaries", "seed", "--by", "rita"])
    assert refused.exit_code == 1 and "rita is not an admin" in refused.output
    unknown = runner.invoke(args=["canaries", "seed", "--agent", "ghost"])
    assert unknown.exit_code == 1 and "no active agent 'ghost'" in unknown.output
    with svc.db.read() as session:
        assert session.scalars(select(Canary.seeded_by)).all() == ["ada", "ada"]


def test_a_canary_decided_from_slack_is_told_there(svc, agent, people):
    from review.notifications.channels.slack_decisions import decide_from_slack

    (seeded,) = _seed(svc, agent_slug="billing-bot")
    answer = decide_from_slack(svc, reviewer_holder(svc, "rita"), seeded.deferral_id, "approve")
    assert answer.done and answer.message.startswith(MISSED_MESSAGE)


def test_approve_selected_tells_each_canary_it_approved(app, svc, agent, people):
    (seeded,) = _seed(svc, agent_slug="billing-bot", kind="disable-audit-log")
    with svc.db.write() as session:  # one approver, as Approve selected requires
        session.execute(
            update(Deferral).where(Deferral.id == seeded.deferral_id).values(required_approvals=1)
        )
    rita = logged_in(app, "rita")
    rita.post("/batch/start")
    _claimed_ago(svc, 60)
    d_id = seeded.deferral_id
    rita.post("/batch/selected/approve", {"ids": [d_id], f"seen_ms.{d_id}": "9000"})
    page = rita.get("/batch").get_data(as_text=True)
    assert MISSED_MESSAGE in page and 'class="flash flash-canary" role="alert"' in page
