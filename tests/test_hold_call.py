"""PostgreSQL: a decision held for its undo window is written by one call of
`countersign_hold` (migration 0028, review/reviewing/hold_call.py). It holds, or it writes
nothing and says why, and the full path then tells the reviewer what won."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from review.agents.killswitch import Actor, kill
from review.audit.verify import verify_chain
from review.migrate import downgrade, upgrade
from review.models import Deferral, PendingDecision, utcnow
from review.reviewing import hold_call, prepared_holds, undo
from review.reviewing.claims import claim_batch
from review.reviewing.decision_checks import _DECISIONS_OF
from review.reviewing.decisions import DecisionRefused, decide
from review.reviewing.taking_effect import take_effect_due
from tests.helpers import audit_events, count_rows, refund, reviewer
from tests.prepared_races import (
    chain_holds,
    drop_every_connection,
    record_calls,
    run_once_prepared,
    set_deferral,
)

WINDOW = 5


@pytest.fixture
def world(callback_world):
    built = callback_world(undo_seconds=WINDOW, min_read_seconds=0)
    if built.svc.db.is_sqlite:
        pytest.skip("SQLite writes a prepared hold under its write lock instead")
    return built


@pytest.fixture
def calls(monkeypatch):
    """What each call of the function answered, in order."""
    return record_calls(monkeypatch, hold_call, "call_hold", keep=lambda answer: answer[0])


def claimed(world, holder, n: int = 1) -> list[str]:
    ids = [world.agent.defer(refund(summary=f"Refund {i}")).get_json()["id"] for i in range(n)]
    assert sorted(claim_batch(world.svc, holder)) == sorted(ids)
    return ids


def _held_rows(svc) -> dict[str, tuple]:
    with svc.db.read() as session:
        rows = session.execute(
            text(
                "SELECT deferral_id, user_id, username, verdict, reason, seen_ms,"
                " edited_args IS NULL, edited_args::text, decided_at, effective_at"
                " FROM pending_decisions"
            )
        ).all()
    return {r[0]: tuple(r[1:]) for r in rows}


def _later():
    return utcnow() + timedelta(seconds=WINDOW + 1)


def test_a_held_decision_is_written_by_one_call_as_the_full_path_writes_it(
    world, calls, monkeypatch
):
    rita = reviewer(world.svc)
    fast, full, rest = claimed(world, rita, 3)
    now = utcnow()
    first = decide(world.svc, rita, fast, "reject", "not now", now=now, seen_ms=4000)
    assert calls == ["held"]
    monkeypatch.setattr(prepared_holds, "prepare", lambda *args, **kwargs: None)
    second = decide(world.svc, rita, full, "reject", "not now", now=now, seen_ms=4000)
    assert first.message == second.message and first.effective_at == second.effective_at
    assert (first.status, first.left, second.left) == ("rejected", 2, 1)
    assert first.deferral is not None and first.deferral.id == fast  # the light card's
    rows = _held_rows(world.svc)
    assert rows[fast] == rows[full]
    with world.svc.db.read() as session:
        row = session.get(Deferral, fast)
        assert row.status == "in_review" and row.claimed_by == rita.id  # nothing decided
        lease = session.get(Deferral, rest).lease_expires_at
        assert lease > utcnow() + timedelta(seconds=world.svc.settings.lease_seconds - 60)
    assert audit_events(world.svc, "deferral.rejected") == []  # nothing until it takes effect
    assert take_effect_due(world.svc, _later()) == 2
    assert len(audit_events(world.svc, "deferral.rejected")) == 2
    assert chain_holds(world.svc)


def test_an_approval_held_by_one_call_takes_effect_with_its_receipt(world, calls):
    rita = reviewer(world.svc)
    [d_id] = claimed(world, rita)
    decided = decide(world.svc, rita, d_id, "approve", seen_ms=4000)
    assert calls == ["held"] and decided.status == "approved" and decided.left == 0
    assert take_effect_due(world.svc, _later()) == 1
    with world.svc.db.read() as session:
        row = session.get(Deferral, d_id)
        assert row.status == "approved" and row.receipt and row.decided_by == ["rita"]
    assert chain_holds(world.svc)


def test_a_decision_held_from_another_tab_meanwhile_loses_the_call(world, calls, monkeypatch):
    rita = reviewer(world.svc)
    [d_id] = claimed(world, rita)
    run_once_prepared(monkeypatch, prepared_holds, lambda: decide(world.svc, rita, d_id, "approve"))
    with pytest.raises(DecisionRefused, match="decided it already"):
        decide(world.svc, rita, d_id, "reject", "no")
    assert calls == ["held", "held_already"]  # the other tab's call, then this one's
    assert _held_rows(world.svc)[d_id][2] == "approve"


def test_undo_pressed_between_preparing_and_the_call_lets_the_new_decision_stand(
    world, calls, monkeypatch
):
    rita = reviewer(world.svc)
    [d_id] = claimed(world, rita)
    decide(world.svc, rita, d_id, "approve")
    run_once_prepared(monkeypatch, prepared_holds, lambda: undo.undo(world.svc, rita, d_id))
    decided = decide(world.svc, rita, d_id, "reject", "wrong invoice")
    assert calls == ["held", "held"] and decided.status == "rejected"
    assert _held_rows(world.svc)[d_id][2:4] == ("reject", "wrong invoice")
    assert take_effect_due(world.svc, _later()) == 1
    assert [e.actor_id for e in audit_events(world.svc, "deferral.rejected")] == ["rita"]


def test_a_kill_meanwhile_beats_the_call(world, calls, monkeypatch):
    rita = reviewer(world.svc)
    [d_id] = claimed(world, rita)
    actor = Actor("user", "olivia")
    run_once_prepared(
        monkeypatch, prepared_holds, lambda: kill(world.svc, "billing-bot", actor, "loop")
    )
    with pytest.raises(DecisionRefused, match="already killed by olivia: loop"):
        decide(world.svc, rita, d_id, "approve")
    assert calls == ["changed"]
    assert count_rows(world.svc, PendingDecision) == 0
    assert chain_holds(world.svc)


def test_a_lapsed_claim_meanwhile_loses_the_call_and_renews_nothing(world, calls, monkeypatch):
    rita = reviewer(world.svc)
    d_id, other = claimed(world, rita, 2)
    lapsed = utcnow() - timedelta(seconds=1)
    with world.svc.db.read() as session:
        other_lease = session.get(Deferral, other).lease_expires_at
    run_once_prepared(
        monkeypatch, prepared_holds, lambda: set_deferral(world.svc, d_id, lease_expires_at=lapsed)
    )
    with pytest.raises(DecisionRefused, match="claim on this item lapsed"):
        decide(world.svc, rita, d_id, "approve")
    assert calls == ["changed"]
    assert count_rows(world.svc, PendingDecision) == 0
    with world.svc.db.read() as session:  # the lost call wrote nothing, the lease included
        assert session.get(Deferral, other).lease_expires_at == other_lease


def test_another_reviewer_holding_it_now_loses_the_call(world, calls, monkeypatch):
    rita, sam = reviewer(world.svc), reviewer(world.svc, "sam")
    [d_id] = claimed(world, rita)
    run_once_prepared(
        monkeypatch, prepared_holds, lambda: set_deferral(world.svc, d_id, claimed_by=sam.id)
    )
    with pytest.raises(DecisionRefused, match="another reviewer holds it now"):
        decide(world.svc, rita, d_id, "approve")
    assert calls == ["changed"] and count_rows(world.svc, PendingDecision) == 0


def test_an_expiry_meanwhile_wins(world, calls, monkeypatch):
    rita = reviewer(world.svc)
    [d_id] = claimed(world, rita)
    run_once_prepared(
        monkeypatch,
        prepared_holds,
        lambda: set_deferral(world.svc, d_id, expires_at=utcnow() - timedelta(1)),
    )
    assert decide(world.svc, rita, d_id, "approve").status == "expired"
    assert calls == ["changed"] and count_rows(world.svc, PendingDecision) == 0
    assert chain_holds(world.svc)


def test_an_edit_raising_the_quorum_meanwhile_holds_the_first_of_two(world, calls, monkeypatch):
    rita = reviewer(world.svc)
    [d_id] = claimed(world, rita)
    run_once_prepared(
        monkeypatch, prepared_holds, lambda: set_deferral(world.svc, d_id, required_approvals=2)
    )
    decided = decide(world.svc, rita, d_id, "approve")
    assert calls == ["changed"] and decided.status == "pending"
    assert take_effect_due(world.svc, _later()) == 1
    with world.svc.db.read() as session:
        assert session.get(Deferral, d_id).status == "pending"


def test_a_burst_of_concurrent_held_decisions_takes_effect_with_the_chain_whole(world, calls):
    names = ["rita", "sam", "tess"]  # five each
    holders = [reviewer(world.svc, name) for name in names]
    for _ in range(len(holders) * 5):
        assert world.agent.defer(refund()).status_code == 202
    batches = {h.username: claim_batch(world.svc, h) for h in holders}
    assert sum(len(b) for b in batches.values()) == len(holders) * 5
    failures: list[BaseException] = []

    def decide_all(holder):
        try:
            for i, d_id in enumerate(batches[holder.username]):
                verdict = "approve" if i % 2 == 0 else "reject"
                reason = None if i % 2 == 0 else "no"
                decide(world.svc, holder, d_id, verdict, reason, seen_ms=4000)
        except BaseException as error:  # noqa: BLE001  reported below
            failures.append(error)

    threads = [threading.Thread(target=decide_all, args=(h,)) for h in holders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert failures == []
    assert calls == ["held"] * len(holders) * 5
    assert count_rows(world.svc, PendingDecision) == len(holders) * 5
    assert take_effect_due(world.svc, _later()) == len(holders) * 5
    with world.svc.db.read() as session:
        statuses = session.scalars(select(Deferral.status)).all()
        assert sorted(set(statuses)) == ["approved", "rejected"]
        assert verify_chain(session).ok
    assert len(audit_events(world.svc, "deferral.approved")) == len(holders) * 3


def test_a_held_decision_on_connections_the_server_dropped_is_written_once(world, calls):
    """The read and the call take their connections without the pool's ping: when the
    server has dropped the pooled ones, each runs again on a pinged connection."""
    rita = reviewer(world.svc)
    first, second = claimed(world, rita, 2)
    drop_every_connection(world.svc.db.url)
    assert decide(world.svc, rita, first, "approve").effective_at is not None
    prepared = prepared_holds.prepare(world.svc, rita, second, "reject", "no", utcnow(), None, 5)
    drop_every_connection(world.svc.db.url)
    assert prepared_holds.apply(world.svc, prepared).status == "rejected"
    assert calls == ["held", "held"]
    assert count_rows(world.svc, PendingDecision) == 2


def test_the_function_takes_the_reviewers_decision_lock_of_the_full_path(world):
    with world.svc.db.engine.connect() as conn:
        source = conn.execute(
            text("SELECT prosrc FROM pg_proc WHERE proname = 'countersign_hold'")
        ).scalar_one()
    assert f"pg_advisory_xact_lock({_DECISIONS_OF}, p_holder)" in source


def test_the_migration_goes_down_and_up_again(world, calls):
    def defined() -> bool:
        with world.svc.db.engine.connect() as conn:
            found = conn.execute(
                text("SELECT count(*) FROM pg_proc WHERE proname = :n"), {"n": "countersign_hold"}
            )
            return found.scalar() == 1

    assert defined()
    downgrade(world.svc.db, "0027")
    assert not defined()
    upgrade(world.svc.db)
    assert defined()
    rita = reviewer(world.svc)
    [d_id] = claimed(world, rita)
    assert decide(world.svc, rita, d_id, "approve").effective_at is not None
    assert calls == ["held"]
