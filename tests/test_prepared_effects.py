"""A held decision taking effect, prepared before SQLite's write lock or PostgreSQL's one
call (review/reviewing/prepared_effects.py): it writes what the full path writes, and a
change between its preparation and its write sends it down the full path, which drops or
takes it."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from review.agents import killswitch
from review.models import Deferral, OutboxEvent, PendingDecision
from review.reviewing import prepared_effects, undo
from review.reviewing.decisions import decide
from review.reviewing.taking_effect import take_effect
from tests.helpers import audit_events, count_rows, reviewer
from tests.prepared_races import (
    chain_holds,
    deferral_status,
    held_decisions,
    run_once_prepared,
)

WINDOW = 5


@pytest.fixture
def world(callback_world):
    return callback_world(undo_seconds=WINDOW, min_read_seconds=3)


def test_taking_effect_is_prepared_on_both_databases(world):
    rita = reviewer(world.svc)
    [d_id], clicked = held_decisions(world, rita)
    effect = clicked + timedelta(seconds=WINDOW)
    prepared, taking = prepared_effects.prepare(world.svc, d_id, effect)
    # SQLite: the held row's DELETE bound for the lock; PostgreSQL: the one call's parameters.
    assert (taking is not None, prepared.call is None) == (world.svc.db.is_sqlite,) * 2
    assert prepared_effects.prepare(world.svc, d_id, clicked) is None  # not due yet


def test_a_prepared_taking_effect_writes_what_the_full_path_writes(world, monkeypatch):
    rita = reviewer(world.svc)
    (fast, full), clicked = held_decisions(world, rita, n=2)
    effect = clicked + timedelta(seconds=WINDOW, milliseconds=300)
    applied = []
    apply = prepared_effects.apply
    monkeypatch.setattr(prepared_effects, "apply", lambda *a: applied.append(a) or apply(*a))
    first = take_effect(world.svc, fast, now=effect)
    monkeypatch.setattr(prepared_effects, "prepare", lambda *args: None)
    second = take_effect(world.svc, full, now=effect)
    assert len(applied) == 1
    assert (
        (first.status, first.message)
        == (second.status, second.message)
        == ("approved", "Approved.")
    )
    with world.svc.db.read() as session:
        rows = {d.id: d for d in session.scalars(select(Deferral))}
        for d in rows.values():
            assert d.decided_at == effect and d.valid_until == effect + timedelta(seconds=3600)
            assert d.decided_by == ["rita"] and d.receipt and d.claimed_by is None
        outbox = session.scalars(select(OutboxEvent).order_by(OutboxEvent.deferral_id)).all()
        assert {e.deferral_id for e in outbox} == {fast, full}
        assert all(e.created_at == effect for e in outbox)
    events = {e.deferral_id: e for e in audit_events(world.svc, "deferral.approved")}
    payloads = [json.loads(events[i].payload) for i in (fast, full)]
    for p in payloads:
        del p["receipt"]  # its own id, digest and signature
    assert payloads[0] == payloads[1]
    assert payloads[0]["reported_ms"] == 4200 and payloads[0]["seconds_in_view"] == 4.2
    assert {events[i].at for i in (fast, full)} == {effect}
    assert count_rows(world.svc, PendingDecision) == 0
    assert chain_holds(world.svc)


def test_undo_meanwhile_leaves_nothing_to_take(world, monkeypatch):
    rita = reviewer(world.svc)
    [d_id], clicked = held_decisions(world, rita)
    undone = clicked + timedelta(seconds=1)
    run_once_prepared(
        monkeypatch, prepared_effects, lambda: undo.undo(world.svc, rita, d_id, now=undone)
    )
    assert take_effect(world.svc, d_id, now=clicked + timedelta(seconds=WINDOW)) is None
    assert deferral_status(world.svc, d_id) == "in_review"
    assert audit_events(world.svc, "deferral.approved") == []
    assert count_rows(world.svc, PendingDecision) == 0


def test_undone_and_decided_again_meanwhile_takes_the_new_decision_in_its_own_window(
    world, monkeypatch
):
    rita = reviewer(world.svc)
    [d_id], clicked = held_decisions(world, rita)
    again = clicked + timedelta(seconds=1)

    def undone_and_rejected():
        undo.undo(world.svc, rita, d_id, now=again)
        decide(world.svc, rita, d_id, "reject", "wrong invoice", now=again)

    run_once_prepared(monkeypatch, prepared_effects, undone_and_rejected)
    assert take_effect(world.svc, d_id, now=clicked + timedelta(seconds=WINDOW)) is None
    assert audit_events(world.svc, "deferral.approved") == []
    decided = take_effect(world.svc, d_id, now=again + timedelta(seconds=WINDOW))
    assert decided.status == "rejected" and deferral_status(world.svc, d_id) == "rejected"


def test_a_kill_meanwhile_drops_the_decision(world, monkeypatch):
    rita = reviewer(world.svc)
    [d_id], clicked = held_decisions(world, rita)
    actor = killswitch.Actor("user", "olivia")

    def killed():
        killswitch.kill(world.svc, "billing-bot", actor, "loop")

    run_once_prepared(monkeypatch, prepared_effects, killed)
    assert take_effect(world.svc, d_id, now=clicked + timedelta(seconds=WINDOW)) is None
    assert deferral_status(world.svc, d_id) == "killed"
    assert audit_events(world.svc, "deferral.approved") == []
    assert count_rows(world.svc, PendingDecision) == 0
    assert chain_holds(world.svc)


def test_a_lease_lapsing_meanwhile_does_not_stop_it(world, monkeypatch):
    rita = reviewer(world.svc)
    [d_id], clicked = held_decisions(world, rita)

    def lapsed():
        with world.svc.db.write() as session:
            session.execute(
                update(Deferral)
                .where(Deferral.id == d_id)
                .values(lease_expires_at=clicked - timedelta(seconds=1))
            )

    run_once_prepared(monkeypatch, prepared_effects, lapsed)
    decided = take_effect(world.svc, d_id, now=clicked + timedelta(seconds=WINDOW))
    assert decided.status == "approved" and deferral_status(world.svc, d_id) == "approved"


def test_another_worker_taking_it_meanwhile_takes_it_once(world, monkeypatch):
    rita = reviewer(world.svc)
    [d_id], clicked = held_decisions(world, rita, verdict="reject")
    effect = clicked + timedelta(seconds=WINDOW)
    run_once_prepared(
        monkeypatch, prepared_effects, lambda: take_effect(world.svc, d_id, now=effect)
    )
    assert take_effect(world.svc, d_id, now=effect) is None
    assert len(audit_events(world.svc, "deferral.rejected")) == 1
    with world.svc.db.read() as session:
        owed = session.scalars(select(OutboxEvent).where(OutboxEvent.deferral_id == d_id))
        assert len(owed.all()) == 1
    assert chain_holds(world.svc)


def test_an_edit_meanwhile_is_approved_as_it_is_at_the_lock(world, monkeypatch):
    rita = reviewer(world.svc)
    [d_id], clicked = held_decisions(world, rita)

    def edited():
        with world.svc.db.write() as session:
            session.execute(
                update(Deferral)
                .where(Deferral.id == d_id)
                .values(action_digest="sha256:" + "0" * 64)
            )

    run_once_prepared(monkeypatch, prepared_effects, edited)
    assert (
        take_effect(world.svc, d_id, now=clicked + timedelta(seconds=WINDOW)).status == "approved"
    )
    (event,) = audit_events(world.svc, "deferral.approved")
    payload = json.loads(event.payload)
    assert payload["action_digest"] == payload["receipt"]["action_digest"] == "sha256:" + "0" * 64
    assert chain_holds(world.svc)
