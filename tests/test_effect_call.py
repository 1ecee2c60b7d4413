"""PostgreSQL: a held decision takes effect in one call of `countersign_take_effect`
(migration 0029, review/reviewing/effect_call.py). It takes effect, or it writes nothing
and says why, and the full path then drops or takes the decision."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, text, update

from review.agents.killswitch import Actor, kill
from review.migrate import downgrade, upgrade
from review.models import Deferral, OutboxEvent, PendingDecision, utcnow
from review.notifications.models import Notification, NotificationItem
from review.reviewing import effect_call, prepared_effects, undo
from review.reviewing.claims import claim_batch
from review.reviewing.decisions import decide
from review.reviewing.taking_effect import take_effect, take_effect_due
from tests.helpers import audit_events, count_rows, refund, reviewer
from tests.prepared_races import (
    chain_holds,
    deferral_status,
    drop_every_connection,
    held_decisions,
    record_calls,
    run_once_prepared,
)

WINDOW = 5


@pytest.fixture
def world(callback_world):
    built = callback_world(undo_seconds=WINDOW, min_read_seconds=0)
    if built.svc.db.is_sqlite:
        pytest.skip("SQLite takes a prepared decision into effect under its write lock")
    return built


@pytest.fixture
def calls(monkeypatch):
    """What each call of the function answered, in order."""
    return record_calls(monkeypatch, effect_call, "call_take_effect")


def held(world, rita, verdict="approve", n=1):
    """`held_decisions`, with the moment their window has closed."""
    ids, clicked = held_decisions(world, rita, verdict, n)
    return ids, clicked + timedelta(seconds=WINDOW)


def test_a_held_approval_takes_effect_in_one_call(world, calls):
    rita = reviewer(world.svc)
    [d_id], effect = held(world, rita)
    decided = take_effect(world.svc, d_id, now=effect)
    assert calls == ["decided"] and decided.status == "approved"
    with world.svc.db.read() as session:
        row = session.get(Deferral, d_id)
        assert row.status == "approved" and row.decided_at == effect and row.receipt
        assert row.claimed_by is None and row.decided_by == ["rita"]
        (owed,) = session.scalars(select(OutboxEvent)).all()
        assert owed.deferral_id == d_id and owed.created_at == effect
    assert count_rows(world.svc, PendingDecision) == 0
    assert [e.at for e in audit_events(world.svc, "deferral.approved")] == [effect]
    assert chain_holds(world.svc)


def test_undo_meanwhile_loses_the_call_and_nothing_is_taken(world, calls, monkeypatch):
    rita = reviewer(world.svc)
    [d_id], effect = held(world, rita)
    run_once_prepared(
        monkeypatch,
        prepared_effects,
        lambda: undo.undo(world.svc, rita, d_id, now=effect - timedelta(1e-3)),
    )
    assert take_effect(world.svc, d_id, now=effect) is None
    assert calls == ["taken"] and deferral_status(world.svc, d_id) == "in_review"
    assert audit_events(world.svc, "deferral.approved") == []


def test_a_kill_meanwhile_loses_the_call_and_drops_the_decision(world, calls, monkeypatch):
    rita = reviewer(world.svc)
    [d_id], effect = held(world, rita)
    run_once_prepared(
        monkeypatch,
        prepared_effects,
        lambda: kill(world.svc, "billing-bot", Actor("user", "o"), "loop"),
    )
    assert take_effect(world.svc, d_id, now=effect) is None
    assert calls == ["ended"] and deferral_status(world.svc, d_id) == "killed"
    assert count_rows(world.svc, PendingDecision) == 0  # the full path dropped it
    assert audit_events(world.svc, "deferral.approved") == []
    assert chain_holds(world.svc)


def test_another_worker_meanwhile_takes_it_once(world, calls, monkeypatch):
    rita = reviewer(world.svc)
    [d_id], effect = held(world, rita, verdict="reject")
    run_once_prepared(
        monkeypatch, prepared_effects, lambda: take_effect(world.svc, d_id, now=effect)
    )
    assert take_effect(world.svc, d_id, now=effect) is None
    assert calls == ["decided", "ended"]
    assert len(audit_events(world.svc, "deferral.rejected")) == 1
    assert chain_holds(world.svc)


def test_an_edit_meanwhile_loses_the_call_and_the_full_path_approves_the_new_action(
    world, calls, monkeypatch
):
    rita = reviewer(world.svc)
    [d_id], effect = held(world, rita)
    digest = "sha256:" + "0" * 64

    def edited():
        with world.svc.db.write() as session:
            session.execute(
                update(Deferral).where(Deferral.id == d_id).values(action_digest=digest)
            )

    run_once_prepared(monkeypatch, prepared_effects, edited)
    assert take_effect(world.svc, d_id, now=effect).status == "approved"
    assert calls == ["changed"]
    (event,) = audit_events(world.svc, "deferral.approved")
    assert digest in event.payload
    assert chain_holds(world.svc)


def test_a_notification_told_of_it_meanwhile_loses_the_call_to_the_full_path(
    world, calls, monkeypatch
):
    rita = reviewer(world.svc)
    [d_id], effect = held(world, rita)

    def told():
        with world.svc.db.write() as session:
            message = Notification(
                id="ntf_meanwhile", kind="deferral.waiting", channel="email", next_attempt_at=effect
            )
            session.add(message)
            session.flush()
            session.add(NotificationItem(notification_id=message.id, deferral_id=d_id))

    run_once_prepared(monkeypatch, prepared_effects, told)
    assert take_effect(world.svc, d_id, now=effect).status == "approved"
    assert calls == ["owes_more"]
    assert chain_holds(world.svc)


def test_sweeps_racing_on_a_burst_take_each_decision_once(world, calls):
    names = ["rita", "sam", "tess"]
    holders = [reviewer(world.svc, name) for name in names]
    for _ in range(len(holders) * 5):
        assert world.agent.defer(refund()).status_code == 202
    batches = {h.username: claim_batch(world.svc, h) for h in holders}
    for h in holders:
        for i, d_id in enumerate(batches[h.username]):
            verdict, reason = ("approve", None) if i % 2 == 0 else ("reject", "no")
            decide(world.svc, h, d_id, verdict, reason, seen_ms=4000)
    later = utcnow() + timedelta(seconds=WINDOW + 1)
    taken: list[int] = []
    failures: list[BaseException] = []

    def sweep():
        try:
            taken.append(take_effect_due(world.svc, later))
        except BaseException as error:  # noqa: BLE001  reported below
            failures.append(error)

    threads = [threading.Thread(target=sweep) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert failures == [] and sum(taken) == len(holders) * 5
    assert calls.count("decided") == len(holders) * 5
    assert count_rows(world.svc, PendingDecision) == 0
    assert len(audit_events(world.svc, "deferral.approved")) == len(holders) * 3
    assert len(audit_events(world.svc, "deferral.rejected")) == len(holders) * 2
    assert chain_holds(world.svc)


def test_taking_effect_on_connections_the_server_dropped_is_written_once(world, calls):
    rita = reviewer(world.svc)
    (first, second), effect = held(world, rita, n=2)
    drop_every_connection(world.svc.db.url)
    assert take_effect(world.svc, first, now=effect).status == "approved"
    prepared, taking = prepared_effects.prepare(world.svc, second, effect)
    drop_every_connection(world.svc.db.url)
    assert prepared_effects.apply(world.svc, prepared, taking, effect).status == "approved"
    assert calls == ["decided", "decided"]
    assert len(audit_events(world.svc, "deferral.approved")) == 2
    assert chain_holds(world.svc)


def test_the_migration_goes_down_and_up_again(world, calls):
    def defined() -> bool:
        with world.svc.db.engine.connect() as conn:
            found = conn.execute(
                text("SELECT count(*) FROM pg_proc WHERE proname = 'countersign_take_effect'")
            )
            return found.scalar() == 1

    assert defined()
    downgrade(world.svc.db, "0028")
    assert not defined()
    upgrade(world.svc.db)
    assert defined()
    rita = reviewer(world.svc)
    [d_id], effect = held(world, rita)
    assert take_effect(world.svc, d_id, now=effect).status == "approved"
    assert calls == ["decided"]
