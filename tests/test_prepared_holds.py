"""A decision held for its undo window, prepared before SQLite's write lock
(review/reviewing/prepared_holds.py): it holds the row the full path holds, and a change
between its preparation and its lock sends it down the full path, which says what won."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, text, update

from review.agents import killswitch
from review.audit.verify import verify_chain
from review.models import Deferral, PendingDecision, utcnow
from review.reviewing import prepared_holds, undo
from review.reviewing.claims import claim_batch
from review.reviewing.decisions import DecisionRefused, decide
from review.reviewing.taking_effect import take_effect_due
from tests.helpers import audit_events, count_rows, refund, reviewer

WINDOW = 5


@pytest.fixture
def world(callback_world):
    return callback_world(undo_seconds=WINDOW, min_read_seconds=0)


def claimed(world, holder, n: int = 1) -> list[str]:
    ids = [world.agent.defer(refund(summary=f"Refund {i}")).get_json()["id"] for i in range(n)]
    assert sorted(claim_batch(world.svc, holder)) == sorted(ids)
    return ids


def _between_preparing_and_holding(monkeypatch, meanwhile):
    """Run `meanwhile()` once the next held decision is prepared, before it takes the lock."""
    prepare, pending = prepared_holds.prepare, [meanwhile]

    def prepared_then(*args, **kwargs):
        prepared = prepare(*args, **kwargs)
        if pending:
            pending.pop()()
        return prepared

    monkeypatch.setattr(prepared_holds, "prepare", prepared_then)


def _held_rows(world) -> dict[str, tuple]:
    """pending_decisions as stored, by deferral id (JSON's null told from SQL's NULL)."""
    with world.svc.db.read() as session:
        rows = session.execute(
            text(
                "SELECT deferral_id, user_id, username, verdict, reason, seen_ms,"
                " edited_args IS NULL, decided_at, effective_at FROM pending_decisions"
            )
        ).all()
    return {r[0]: tuple(r[1:]) for r in rows}


def _later():
    return utcnow() + timedelta(seconds=WINDOW + 1)


def test_a_held_decision_is_prepared_on_both_databases(world):
    rita = reviewer(world.svc)
    [d_id] = claimed(world, rita)
    prepared = prepared_holds.prepare(world.svc, rita, d_id, "approve", None, utcnow(), 4000, 5)
    assert prepared is not None
    assert (prepared.call is not None) == (not world.svc.db.is_sqlite)  # PostgreSQL: one call


def test_a_prepared_hold_stores_what_the_full_path_stores(world, monkeypatch):
    rita = reviewer(world.svc)
    fast, full = claimed(world, rita, 2)
    now = utcnow()
    applied = []
    apply = prepared_holds.apply
    monkeypatch.setattr(prepared_holds, "apply", lambda *a: applied.append(a) or apply(*a))
    first = decide(world.svc, rita, fast, "reject", "not now", now=now, seen_ms=4000)
    monkeypatch.setattr(prepared_holds, "prepare", lambda *args, **kwargs: None)
    second = decide(world.svc, rita, full, "reject", "not now", now=now, seen_ms=4000)
    assert len(applied) == 1  # the first one, prepared
    assert first.message == second.message and first.effective_at == second.effective_at
    assert (first.status, first.left) == ("rejected", 1) and second.left == 0
    rows = _held_rows(world)
    assert rows[fast] == rows[full]
    assert audit_events(world.svc, "deferral.rejected") == []  # nothing until it takes effect
    assert take_effect_due(world.svc, _later()) == 2
    with world.svc.db.read() as session:
        assert {d.status for d in session.scalars(select(Deferral))} == {"rejected"}
        assert verify_chain(session).ok


def test_a_prepared_approval_takes_effect_with_its_receipt(world):
    rita = reviewer(world.svc)
    [d_id] = claimed(world, rita)
    decided = decide(world.svc, rita, d_id, "approve", seen_ms=4000)
    assert decided.status == "approved" and "Undo" in decided.message
    assert decided.effective_at is not None and decided.left == 0
    assert take_effect_due(world.svc, _later()) == 1
    with world.svc.db.read() as session:
        row = session.get(Deferral, d_id)
        assert row.status == "approved" and row.receipt and row.decided_by == ["rita"]


def test_undo_pressed_between_preparing_and_holding_lets_the_new_decision_stand(world, monkeypatch):
    rita = reviewer(world.svc)
    [d_id] = claimed(world, rita)
    decide(world.svc, rita, d_id, "approve")  # held; she undoes it and rejects at once
    _between_preparing_and_holding(monkeypatch, lambda: undo.undo(world.svc, rita, d_id))
    decided = decide(world.svc, rita, d_id, "reject", "wrong invoice")
    assert decided.status == "rejected" and decided.effective_at is not None
    assert _held_rows(world)[d_id][2:4] == ("reject", "wrong invoice")
    assert take_effect_due(world.svc, _later()) == 1
    assert [e.actor_id for e in audit_events(world.svc, "deferral.rejected")] == ["rita"]


def test_a_decision_held_from_another_tab_meanwhile_is_refused(world, monkeypatch):
    rita = reviewer(world.svc)
    [d_id] = claimed(world, rita)
    _between_preparing_and_holding(monkeypatch, lambda: decide(world.svc, rita, d_id, "approve"))
    with pytest.raises(DecisionRefused, match="decided it already"):
        decide(world.svc, rita, d_id, "reject", "no")
    assert _held_rows(world)[d_id][2] == "approve"


def test_a_kill_meanwhile_beats_the_prepared_hold(world, monkeypatch):
    rita = reviewer(world.svc)
    [d_id] = claimed(world, rita)
    actor = killswitch.Actor("user", "olivia")
    _between_preparing_and_holding(
        monkeypatch, lambda: killswitch.kill(world.svc, "billing-bot", actor, "loop")
    )
    with pytest.raises(DecisionRefused, match="already killed"):
        decide(world.svc, rita, d_id, "approve")
    assert count_rows(world.svc, PendingDecision) == 0


def test_a_lapsed_claim_meanwhile_is_refused(world, monkeypatch):
    rita = reviewer(world.svc)
    [d_id] = claimed(world, rita)

    def lapsed():
        with world.svc.db.write() as session:
            session.execute(
                update(Deferral)
                .where(Deferral.id == d_id)
                .values(lease_expires_at=utcnow() - timedelta(seconds=1))
            )

    _between_preparing_and_holding(monkeypatch, lapsed)
    with pytest.raises(DecisionRefused, match="claim on this item lapsed"):
        decide(world.svc, rita, d_id, "approve")
    assert count_rows(world.svc, PendingDecision) == 0


def test_a_claim_taken_again_meanwhile_counts_the_time_in_view_on_the_new_one(
    callback_world, monkeypatch
):
    world = callback_world(undo_seconds=WINDOW, min_read_seconds=3)
    rita = reviewer(world.svc)
    [d_id] = claimed(world, rita)

    def claimed_at(seconds_ago: int) -> None:
        with world.svc.db.write() as session:
            at = utcnow() - timedelta(seconds=seconds_ago)
            session.execute(update(Deferral).where(Deferral.id == d_id).values(claimed_at=at))

    claimed_at(10)  # prepared on a claim of 10 s: 4 s in view counts as read
    # Lapsed, returned and claimed again meanwhile: 1 s in view, under the 3 s minimum.
    _between_preparing_and_holding(monkeypatch, lambda: claimed_at(1))
    decided = decide(world.svc, rita, d_id, "approve", seen_ms=4000)
    assert decided.effective_at is not None and decided.fast
    assert count_rows(world.svc, PendingDecision) == 1


def test_an_expiry_meanwhile_wins(world, monkeypatch):
    rita = reviewer(world.svc)
    [d_id] = claimed(world, rita)

    def overdue():
        with world.svc.db.write() as session:
            session.execute(
                update(Deferral)
                .where(Deferral.id == d_id)
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )

    _between_preparing_and_holding(monkeypatch, overdue)
    assert decide(world.svc, rita, d_id, "approve").status == "expired"
    assert count_rows(world.svc, PendingDecision) == 0


def test_an_edit_raising_the_quorum_meanwhile_holds_the_first_of_two(world, monkeypatch):
    rita = reviewer(world.svc)
    [d_id] = claimed(world, rita)

    def two_needed():
        with world.svc.db.write() as session:
            session.execute(
                update(Deferral).where(Deferral.id == d_id).values(required_approvals=2)
            )

    _between_preparing_and_holding(monkeypatch, two_needed)
    decided = decide(world.svc, rita, d_id, "approve")
    assert decided.status == "pending" and "short of its quorum" in decided.message
    assert take_effect_due(world.svc, _later()) == 1
    with world.svc.db.read() as session:
        assert session.get(Deferral, d_id).status == "pending"
