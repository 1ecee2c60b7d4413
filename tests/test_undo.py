"""Undo (PROTOCOL.md section 16): a decision is held for COUNTERSIGN_UNDO_SECONDS and
nothing leaves the server before it takes effect; a closed tab does not lose it.

Time is passed in (`now=`) where a test needs the window open or closed, so no test
waits on a clock; the worker tests run a real rq worker against real Redis.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from review.agents import killswitch
from review.audit.chain import chained_write
from review.audit.verify import verify_chain
from review.models import Deferral, OutboxEvent, PendingDecision, utcnow
from review.reviewing import undo
from review.reviewing.bulk import decide_many
from review.reviewing.claims import claim_batch, release_batch
from review.reviewing.decisions import DecisionRefused, decide
from review.reviewing.edits import edit_and_approve
from review.reviewing.lapsed_claims import return_lapsed_claims
from review.reviewing.taking_effect import take_effect, take_effect_due
from tests.helpers import Browser, audit_events, count_rows, refund, reviewer, work_until

WINDOW = 5


@pytest.fixture
def world(callback_world):
    """An app with a 5 s undo window whose agent has a callback receiver."""
    return callback_world(undo_seconds=WINDOW, min_read_seconds=0)


def claimed(world, holder, body=None, now=None) -> str:
    d_id = world.agent.defer(body or refund()).get_json()["id"]
    assert d_id in claim_batch(world.svc, holder, now=now)
    return d_id


def resource(world, d_id: str) -> dict:
    return world.agent.get(f"/api/v1/deferrals/{d_id}").get_json()


def outbox(world) -> list[OutboxEvent]:
    with world.svc.db.read() as session:
        return session.scalars(select(OutboxEvent)).all()


def test_a_decision_in_its_window_changes_nothing_anyone_can_see(world):
    rita = reviewer(world.svc)
    d_id = claimed(world, rita)
    decided = decide(world.svc, rita, d_id, "approve")
    assert decided.status == "approved" and decided.effective_at is not None
    assert "Undo" in decided.message
    seen = resource(world, d_id)  # the agent's GET, while the window is open
    assert seen["status"] == "in_review" and seen["decision"] is None
    assert outbox(world) == []
    assert audit_events(world.svc, "deferral.approved") == []


def test_undo_within_the_window_gives_the_card_back(world):
    rita = reviewer(world.svc)
    d_id = claimed(world, rita)
    decide(world.svc, rita, d_id, "reject", "wrong invoice")
    undone = undo.undo(world.svc, rita, d_id)
    assert "Undone" in undone.message
    assert count_rows(world.svc, PendingDecision) == 0
    later = utcnow() + timedelta(seconds=WINDOW + 1)
    assert take_effect_due(world.svc, later) == 0
    assert resource(world, d_id)["status"] == "in_review"
    # Still held by rita: she decides again, and that one stands.
    decide(world.svc, rita, d_id, "approve")
    assert take_effect_due(world.svc, utcnow() + timedelta(seconds=WINDOW + 1)) == 1
    assert resource(world, d_id)["status"] == "approved"


def test_undo_is_refused_once_the_window_has_closed(world):
    rita = reviewer(world.svc)
    d_id = claimed(world, rita)
    decided = decide(world.svc, rita, d_id, "approve")
    with pytest.raises(undo.UndoRefused, match="Too late"):
        undo.undo(world.svc, rita, d_id, now=decided.effective_at)
    assert take_effect(world.svc, d_id, now=decided.effective_at).status == "approved"
    with pytest.raises(undo.UndoRefused, match="taken effect"):
        undo.undo(world.svc, rita, d_id, now=decided.effective_at)
    assert resource(world, d_id)["status"] == "approved"


def test_only_the_reviewer_who_decided_can_undo(world):
    rita, ada = reviewer(world.svc), reviewer(world.svc, "ada", "admin")
    d_id = claimed(world, rita)
    decide(world.svc, rita, d_id, "approve")
    with pytest.raises(undo.UndoRefused, match="another reviewer's"):
        undo.undo(world.svc, ada, d_id)
    assert count_rows(world.svc, PendingDecision) == 1


def test_deciding_twice_in_the_window_is_refused(world):
    rita = reviewer(world.svc)
    d_id = claimed(world, rita)
    decide(world.svc, rita, d_id, "approve")
    with pytest.raises(DecisionRefused, match="decided it already"):
        decide(world.svc, rita, d_id, "reject", "no")


def test_a_closed_tab_still_decides_through_the_real_worker(world):
    rita = reviewer(world.svc)
    d_id = claimed(world, rita)
    decided = decide(world.svc, rita, d_id, "approve", now=utcnow() - timedelta(seconds=WINDOW))
    assert decided.effective_at <= utcnow()  # the window has closed; nobody reads the card
    world.work_until(lambda: bool(outbox(world)) and outbox(world)[0].status == "delivered")
    [(_headers, body, _path)] = world.receiver.requests
    sent = json.loads(body)["data"]
    assert sent["id"] == d_id and sent["status"] == "approved"
    assert sent["decision"]["decided_by"] == ["rita"]
    assert count_rows(world.svc, PendingDecision) == 0


def test_the_scheduled_job_takes_it_into_effect_when_the_window_closes(callback_world):
    world = callback_world(undo_seconds=1, min_read_seconds=0)
    rita = reviewer(world.svc)
    d_id = claimed(world, rita)
    decide(world.svc, rita, d_id, "approve")  # schedules the job for a second from now
    work_until(world.app, world.svc, lambda: resource(world, d_id)["status"] == "approved")


def test_decisions_closing_in_the_same_second_share_one_job_run_after_it(world, redis_client):
    rita = reviewer(world.svc)
    first, second = claimed(world, rita), claimed(world, rita)
    now = utcnow().replace(microsecond=100_000)  # both windows close in this second + 5
    decide(world.svc, rita, first, "approve", now=now)
    decide(world.svc, rita, second, "approve", now=now + timedelta(milliseconds=700))
    registry = undo.queue(redis_client).scheduled_job_registry
    [job_id] = registry.get_job_ids()  # one job takes both (take_effect_due)
    run_at = registry.get_scheduled_time(job_id)  # rq keeps whole seconds
    assert run_at >= now + timedelta(seconds=WINDOW, milliseconds=700)  # never before
    assert run_at < now + timedelta(seconds=WINDOW + 1)
    later = claimed(world, rita)
    decide(world.svc, rita, later, "approve", now=now + timedelta(seconds=1))
    assert len(registry.get_job_ids()) == 2  # the next second's window: a job of its own


def test_a_second_whose_job_this_process_knows_sends_nothing_more_to_redis(world, monkeypatch):
    rita = reviewer(world.svc)
    first, second, third = (claimed(world, rita) for _ in range(3))
    now = utcnow().replace(microsecond=100_000)
    decide(world.svc, rita, first, "approve", now=now)  # schedules this second's job
    client, sets = world.svc.redis.client(), []
    real_set = client.set
    monkeypatch.setattr(client, "set", lambda *a, **k: sets.append(a[0]) or real_set(*a, **k))
    decide(world.svc, rita, second, "approve", now=now + timedelta(milliseconds=700))
    assert sets == []  # known scheduled: no SET NX
    decide(world.svc, rita, third, "approve", now=now + timedelta(seconds=1))
    assert len(sets) == 1  # the next second's: asked of Redis


def test_the_batch_page_takes_a_closed_window_into_effect_before_it_shows_the_batch(world):
    rita = reviewer(world.svc)
    browser = Browser(world.app.test_client(), "rita")
    closed, still_held, open_ = claimed(world, rita), claimed(world, rita), claimed(world, rita)
    decide(world.svc, rita, closed, "approve", now=utcnow() - timedelta(seconds=WINDOW + 1))
    decide(world.svc, rita, still_held, "reject", "no")
    page = browser.get("/batch").get_data(as_text=True)
    assert resource(world, closed)["status"] == "approved"  # taken into effect first
    assert f'id="card-{closed}"' not in page  # no longer held: not in the batch
    assert f'id="card-{still_held}"' in page and f'id="card-{open_}"' in page
    assert resource(world, still_held)["status"] == "in_review"  # its window is open
    assert 'data-undo-ms="' in page and page.count("data-live") == 1


def test_the_decision_is_stamped_with_the_moment_it_takes_effect(world):
    rita = reviewer(world.svc)
    clicked = utcnow()
    d_id = claimed(world, rita, now=clicked - timedelta(seconds=10))  # 10 s to read it
    decide(world.svc, rita, d_id, "approve", now=clicked, seen_ms=4200)
    effect = clicked + timedelta(seconds=WINDOW, milliseconds=300)
    take_effect(world.svc, d_id, now=effect)
    with world.svc.db.read() as session:
        d = session.get(Deferral, d_id)
        assert d.decided_at == effect and d.valid_until == effect + timedelta(seconds=3600)
    [event] = outbox(world)
    assert event.created_at == effect  # callback latency counts from here
    [approved] = audit_events(world.svc, "deferral.approved")
    assert approved.at == effect
    payload = json.loads(approved.payload)
    assert payload["reported_ms"] == 4200  # the time in view the browser sent
    assert payload["seconds_in_view"] == 4.2
    with world.svc.db.read() as session:
        assert verify_chain(session).ok


def test_the_agents_read_takes_a_due_decision_into_effect(world):
    rita = reviewer(world.svc)
    d_id = claimed(world, rita)
    decide(world.svc, rita, d_id, "approve", now=utcnow() - timedelta(seconds=WINDOW + 1))
    seen = resource(world, d_id)  # no worker ran: the read itself takes it into effect
    assert seen["status"] == "approved" and seen["decision"]["decided_by"] == ["rita"]
    assert len(outbox(world)) == 1


def test_the_kill_switch_beats_a_decision_in_its_window(world):
    rita = reviewer(world.svc)
    d_id = claimed(world, rita)
    decide(world.svc, rita, d_id, "approve")
    killswitch.kill(world.svc, "billing-bot", killswitch.Actor("user", "olivia"), "loop")
    assert take_effect_due(world.svc, utcnow() + timedelta(seconds=WINDOW + 1)) == 0
    seen = resource(world, d_id)
    assert seen["status"] == "killed" and seen["decision"]["decided_by"] == []
    assert audit_events(world.svc, "deferral.approved") == []
    assert count_rows(world.svc, PendingDecision) == 0
    kinds = [json.loads(e.body)["type"] for e in outbox(world)]
    assert "deferral.decided" in kinds and len(kinds) == kinds.count("deferral.decided") + 1


def test_expiry_during_the_window_wins(world):
    rita = reviewer(world.svc)
    d_id = claimed(world, rita, refund(expires_in=60))
    clicked = utcnow()
    decide(world.svc, rita, d_id, "approve", now=clicked)
    with world.svc.db.write() as session:  # the deadline falls inside the window
        session.execute(
            update(Deferral)
            .where(Deferral.id == d_id)
            .values(expires_at=clicked + timedelta(seconds=2))
        )
    take_effect(world.svc, d_id, now=clicked + timedelta(seconds=WINDOW))
    assert resource(world, d_id)["status"] == "expired"


def test_a_lapsing_lease_does_not_lose_a_held_decision(world):
    rita = reviewer(world.svc)
    d_id = claimed(world, rita)
    decide(world.svc, rita, d_id, "approve")
    with world.svc.db.write() as session:
        session.execute(
            update(Deferral)
            .where(Deferral.id == d_id)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
    with chained_write(world.svc.db) as session:
        assert return_lapsed_claims(session, utcnow()) == 0  # the held decision keeps it
    take_effect_due(world.svc, utcnow() + timedelta(seconds=WINDOW + 1))
    assert resource(world, d_id)["status"] == "approved"


def test_releasing_the_batch_keeps_an_item_whose_decision_waits_in_its_window(world):
    rita, sam = reviewer(world.svc), reviewer(world.svc, "sam")
    held, other = claimed(world, rita), claimed(world, rita)
    decide(world.svc, rita, held, "approve")
    assert release_batch(world.svc, rita) == 1  # `other` only
    assert resource(world, held)["status"] == "in_review"
    assert claim_batch(world.svc, sam) == [other]  # never rita's held one
    take_effect_due(world.svc, utcnow() + timedelta(seconds=WINDOW + 1))
    assert resource(world, held)["status"] == "approved"


def test_start_batch_shows_a_kept_item_held_and_tops_the_batch_up(world):
    rita = reviewer(world.svc)
    browser = Browser(world.app.test_client(), "rita")
    held = claimed(world, rita)
    decide(world.svc, rita, held, "reject", "no")
    fresh = world.agent.defer(refund(summary="fresh")).get_json()["id"]
    page = browser.post("/batch/start", {"answer": "page"}).get_data(as_text=True)
    assert f'id="card-{held}"' in page and f'id="card-{fresh}"' in page
    assert 'data-undo-ms="' in page and page.count("data-live") == 1  # fresh's


def test_a_first_of_two_approvals_is_undoable_too(world):
    rita, sam = reviewer(world.svc), reviewer(world.svc, "sam")
    d_id = claimed(world, rita, refund(risk={"score": 95}))
    decided = decide(world.svc, rita, d_id, "approve")
    assert decided.status == "pending" and decided.effective_at is not None
    undo.undo(world.svc, rita, d_id)
    decide(world.svc, rita, d_id, "approve")
    take_effect_due(world.svc, utcnow() + timedelta(seconds=WINDOW + 1))
    assert resource(world, d_id)["status"] == "pending"
    assert [e.actor_id for e in audit_events(world.svc, "deferral.approval_recorded")] == ["rita"]
    assert claim_batch(world.svc, sam) == [d_id]
    decide(world.svc, sam, d_id, "approve")
    take_effect_due(world.svc, utcnow() + timedelta(seconds=WINDOW + 1))
    assert resource(world, d_id)["decision"]["decided_by"] == ["rita", "sam"]


def test_each_of_several_decisions_at_once_gets_its_window(world):
    rita = reviewer(world.svc)
    ids = [claimed(world, rita, refund(summary=f"Refund {n}")) for n in range(3)]
    result = decide_many(world.svc, rita, ids, "reject", "duplicates")
    assert len(result.done) == 3 and all(d.effective_at for d in result.done)
    undo.undo(world.svc, rita, ids[1])
    assert take_effect_due(world.svc, utcnow() + timedelta(seconds=WINDOW + 1)) == 2
    assert [resource(world, i)["status"] for i in ids] == ["rejected", "in_review", "rejected"]


def test_an_edited_approval_changes_the_action_only_when_it_takes_effect(world):
    rita = reviewer(world.svc)
    d_id = claimed(world, rita)
    before = resource(world, d_id)["action"]
    args = {**before["args"], "amount": 100}
    decided = edit_and_approve(world.svc, rita, d_id, args)
    assert decided.effective_at is not None
    assert resource(world, d_id)["action"] == before  # nothing has changed yet
    take_effect_due(world.svc, utcnow() + timedelta(seconds=WINDOW + 1))
    seen = resource(world, d_id)
    assert seen["status"] == "approved" and seen["action"]["args"]["amount"] == 100
    assert seen["decision"]["edited"] is True


def test_with_the_window_at_zero_a_decision_takes_effect_at_once(callback_world):
    world = callback_world(undo_seconds=0)
    rita = reviewer(world.svc)
    d_id = claimed(world, rita)
    decided = decide(world.svc, rita, d_id, "approve")
    assert decided.effective_at is None and decided.status == "approved"
    assert resource(world, d_id)["status"] == "approved"
