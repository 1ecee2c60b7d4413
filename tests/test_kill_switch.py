"""The kill switch (PROTOCOL.md 4.5, section 7's `agents kill`/`revive`): owners and admins
stop an agent at once; intake refuses, undecided deferrals end as killed with callbacks,
the agent is told; breakers trip by themselves."""

import json
import threading

import pytest
from sqlalchemy import select

from review.agents.killswitch import Actor, kill, stop_all
from review.models import Agent, Deferral, OutboxEvent
from review.reviewing.claims import claim_batch
from review.reviewing.decisions import DecisionRefused, decide
from tests.helpers import approved, audit_events, refund, reviewer


def switch_status(agent) -> dict:
    """The kill-switch status the agent reads about itself (PROTOCOL.md 4.5)."""
    return agent.get(f"/api/v1/agents/{agent.slug}/status").get_json()


def statuses(svc):
    with svc.db.read() as session:
        return dict(session.execute(select(Deferral.id, Deferral.status)).all())


def test_an_owner_kills_from_the_cli_and_every_effect_follows(callback_world, runner):
    world = callback_world()
    holder = reviewer(world.svc)
    held = world.agent.defer(refund(summary="held")).get_json()["id"]
    claim_batch(world.svc, holder)  # in_review, in rita's batch
    done = approved(world.svc, world.agent, holder)["id"]
    pending = world.agent.defer(refund(summary="waiting")).get_json()["id"]
    assert statuses(world.svc) == {held: "in_review", done: "approved", pending: "pending"}
    result = world.app.test_cli_runner().invoke(
        args=["agents", "kill", world.agent.slug, "--by", "olivia", "--reason", "refund loop"]
    )
    assert result.exit_code == 0, result.output
    assert "2 undecided deferrals ended" in result.output

    refused = world.agent.defer()
    assert refused.status_code == 423 and refused.get_json()["error"]["code"] == "agent_killed"
    assert statuses(world.svc) == {pending: "killed", held: "killed", done: "approved"}
    resource = world.agent.get(f"/api/v1/deferrals/{pending}").get_json()
    assert resource["decision"]["outcome"] == "killed"
    decision = resource["decision"]
    assert decision["decided_by"] == [] and decision["reason"] == "refund loop"
    status = switch_status(world.agent)
    assert status["state"] == "killed" and status["changed_by"] == "olivia"
    assert status["reason"] == "refund loop" and status["changed_at"].endswith("Z")
    [flip] = audit_events(world.svc, "agent.killed")
    assert flip.actor_id == "olivia" and json.loads(flip.payload)["deferrals_ended"] == 2
    assert len(audit_events(world.svc, "deferral.killed")) == 2

    # Four callbacks: the approved deferral, the two killed ones, and agent.killed.
    world.work_until(lambda: len(world.receiver.requests) == 4)
    bodies = [json.loads(body) for _h, body, _p in world.receiver.requests]
    kinds = sorted((b["type"], b["data"].get("status") or b["data"].get("state")) for b in bodies)
    assert kinds == [
        ("agent.killed", "killed"),
        ("deferral.decided", "approved"),
        ("deferral.decided", "killed"),
        ("deferral.decided", "killed"),
    ]


def test_only_owners_and_admins_flip_and_refusals_are_audited(callback_world, people):
    world = callback_world()
    cli, slug = world.app.test_cli_runner(), world.agent.slug
    for name in ("rita", "audrey", "nobody"):
        result = cli.invoke(args=["agents", "kill", slug, "--by", name, "--reason", "x"])
        assert result.exit_code == 1 and "only its owners and admins" in result.output
    assert [e.actor_id for e in audit_events(world.svc, "agent.flip_refused")] == [
        "rita",
        "audrey",
        "nobody",
    ]
    assert world.agent.defer().status_code == 202
    result = cli.invoke(args=["agents", "kill", slug, "--by", "ada", "--reason", "incident"])
    assert result.exit_code == 0
    again = cli.invoke(args=["agents", "kill", slug, "--by", "ada", "--reason", "twice"])
    assert again.exit_code == 0 and "already killed" in again.output
    assert len(audit_events(world.svc, "agent.killed")) == 1


def test_a_kill_needs_a_reason(callback_world):
    world = callback_world()
    result = world.app.test_cli_runner().invoke(
        args=["agents", "kill", world.agent.slug, "--by", "olivia", "--reason", "  "]
    )
    assert result.exit_code == 1 and "reason is required" in result.output


def test_revive_reopens_intake_but_killed_deferrals_stay_killed(callback_world):
    world = callback_world()
    old = world.agent.defer().get_json()["id"]
    cli = world.app.test_cli_runner()
    cli.invoke(args=["agents", "kill", world.agent.slug, "--by", "olivia", "--reason", "loop"])
    revive = ["agents", "revive", world.agent.slug, "--by", "olivia", "--reason", "fixed"]
    result = cli.invoke(args=revive)
    assert result.exit_code == 0, result.output
    assert world.agent.defer(refund(summary="after")).status_code == 202
    assert statuses(world.svc)[old] == "killed"
    status = switch_status(world.agent)
    assert status["state"] == "active" and status["reason"] == "fixed"
    world.work_until(lambda: len(world.receiver.requests) == 3)
    types = [json.loads(body)["type"] for _h, body, _p in world.receiver.requests]
    assert sorted(types) == ["agent.killed", "agent.revived", "deferral.decided"]


def test_stop_all_kills_every_agent_as_one_audited_action(callback_world, make_agent, people):
    world = callback_world()
    other = make_agent("ops-bot", owner="omar")
    world.agent.defer()
    other.defer()
    cli = world.app.test_cli_runner()
    refused = cli.invoke(args=["agents", "stop-all", "--by", "olivia", "--reason", "incident"])
    assert refused.exit_code == 1 and "only admins" in refused.output
    result = cli.invoke(args=["agents", "stop-all", "--by", "ada", "--reason", "incident 42"])
    assert result.exit_code == 0 and "stopped 2 agents" in result.output
    assert set(statuses(world.svc).values()) == {"killed"}
    [action] = audit_events(world.svc, "agents.stop_all")
    payload = json.loads(action.payload)
    assert payload["agents"] == ["billing-bot", "ops-bot"] and payload["deferrals_ended"] == 2
    assert [json.loads(e.payload)["scope"] for e in audit_events(world.svc, "agent.killed")] == [
        "stop-all",
        "stop-all",
    ]
    one = cli.invoke(args=["agents", "revive", "ops-bot", "--by", "ada", "--reason", "ok"])
    assert one.exit_code == 0 and other.defer().status_code == 202
    rest = cli.invoke(args=["agents", "revive-all", "--by", "ada", "--reason", "over"])
    assert rest.exit_code == 0 and "revived 1 agents (billing-bot)" in rest.output


def test_the_flood_breaker_trips_on_a_runaway_loop(callback_world):
    world = callback_world(breaker_flood="3/60")
    codes = [world.agent.defer(refund(summary=f"loop {i}")).status_code for i in range(5)]
    assert codes == [202, 202, 202, 202, 423]
    status = switch_status(world.agent)
    assert status["state"] == "killed" and status["changed_by"] == "system:breaker"
    assert "flood, 4 deferrals in 60 s" in status["reason"]
    [trip] = audit_events(world.svc, "agent.breaker_tripped")
    assert json.loads(trip.payload) == {
        "rule": "flood",
        "deferrals": 4,
        "window_seconds": 60,
        "limit": 3,
    }
    assert set(statuses(world.svc).values()) == {"killed"}


def test_refused_requests_and_retries_take_no_place_in_the_flood_window(callback_world):
    world = callback_world(breaker_flood="2/60")
    assert world.agent.defer(refund(summary="one"), msg_id="msg_one").status_code == 202
    assert world.agent.defer(b'{"summary": 1}').status_code == 422  # refused: its place given back
    assert world.agent.defer(refund(summary="one"), msg_id="msg_one").status_code == 200  # a retry
    assert world.agent.defer(refund(summary="two")).status_code == 202
    status = switch_status(world.agent)
    assert status["state"] == "active"
    assert world.agent.defer(refund(summary="three")).status_code == 202  # the third in 60 s
    status = switch_status(world.agent)
    assert status["state"] == "killed" and "flood, 3 deferrals in 60 s" in status["reason"]


def test_an_agent_may_turn_its_flood_breaker_off(callback_world):
    world = callback_world(breaker_flood="2/60")
    with world.svc.db.write() as session:
        session.query(Agent).update({"breaker_flood": "0"})
    world.svc.secrets._signers.clear()
    assert [world.agent.defer(refund(summary=f"n{i}")).status_code for i in range(4)] == [202] * 4


def test_the_rejection_breaker_trips_after_k_in_a_row_and_an_approval_resets_it(callback_world):
    world = callback_world(breaker_rejections=2, two_person_level="none")
    holder = reviewer(world.svc)

    def review(verdict):
        d_id = world.agent.defer(refund(summary=verdict)).get_json()["id"]
        claim_batch(world.svc, holder)
        return decide(world.svc, holder, d_id, verdict, "Against policy")

    review("reject")
    review("approve")  # resets the streak
    review("reject")
    assert switch_status(world.agent)["state"] == "active"
    review("reject")
    status = switch_status(world.agent)
    assert status["state"] == "killed" and "2 rejected in a row" in status["reason"]
    revived = world.app.test_cli_runner().invoke(
        args=["agents", "revive", world.agent.slug, "--by", "olivia", "--reason", "retrained"]
    )
    assert revived.exit_code == 0
    review("reject")  # the streak started again from zero
    assert switch_status(world.agent)["state"] == "active"


def test_an_execution_reported_after_the_kill_is_a_violation(callback_world):
    world = callback_world()
    d = approved(world.svc, world.agent, reviewer(world.svc))
    kill(world.svc, world.agent.slug, Actor("user", "olivia"), "stop")
    body = {"outcome": "succeeded", "action_digest": d["action_digest"]}
    response = world.agent.post_json(f"/api/v1/deferrals/{d['id']}/execution", body)
    assert response.status_code == 423
    [violation] = audit_events(world.svc, "execution.violation")
    assert json.loads(violation.payload)["rule"] == "agent_killed"


@pytest.mark.parametrize("round_", range(4))
def test_a_kill_racing_an_approval_has_exactly_one_winner(callback_world, round_):
    world = callback_world(two_person_level="none")
    holder = reviewer(world.svc)
    d_id = world.agent.defer().get_json()["id"]
    claim_batch(world.svc, holder)
    results = {}
    barrier = threading.Barrier(2)

    def approve():
        barrier.wait()
        try:
            results["approve"] = decide(world.svc, holder, d_id, "approve").status
        except DecisionRefused as refused:
            results["approve"] = str(refused)

    def flip():
        barrier.wait()
        results["kill"] = kill(world.svc, world.agent.slug, Actor("user", "olivia"), "race").ended

    threads = [threading.Thread(target=approve), threading.Thread(target=flip)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = statuses(world.svc)[d_id]
    with world.svc.db.read() as session:
        decided = session.scalars(
            select(OutboxEvent.body).where(OutboxEvent.deferral_id == d_id)
        ).all()
    assert len(decided) == 1 and json.loads(decided[0])["data"]["status"] == final
    if final == "approved":
        assert results == {"approve": "approved", "kill": 0}
        assert not audit_events(world.svc, "deferral.killed", deferral_id=d_id)
    else:
        assert final == "killed" and results["kill"] == 1
        assert "already killed" in results["approve"]
        assert not audit_events(world.svc, "deferral.approved", deferral_id=d_id)
    assert world.agent.defer().status_code == 423


def test_stop_all_in_the_domain_returns_what_it_stopped(callback_world):
    world = callback_world()
    flips = stop_all(world.svc, Actor("user", "ada"), "drill")
    assert [(f.slug, f.changed) for f in flips] == [("billing-bot", True)]
