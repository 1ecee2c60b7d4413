"""A decision prepared before its write (review/reviewing/prepared_decisions.py; on
PostgreSQL written by one call, tests/test_decision_call.py): what it writes is what the
full path writes, and a change between its preparation and its write sends it down the
full path, which says what happened."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select, text, update

from review.models import Agent, Approval, Deferral, OutboxEvent
from review.reviewing import prepared_decisions
from review.reviewing.claims import claim_batch
from review.reviewing.decisions import DecisionRefused, decide
from tests.helpers import audit_events, refund, reviewer
from tests.prepared_races import chain_holds


@pytest.fixture
def held(svc, agent):
    rita = reviewer(svc)
    d_id = agent.defer(refund()).get_json()["id"]
    claim_batch(svc, rita)
    return rita, d_id


def _between_preparing_and_applying(monkeypatch, meanwhile):
    """Run `meanwhile()` once the next decision is prepared, before it takes the lock."""
    prepare, pending = prepared_decisions.prepare, [meanwhile]

    def prepared_then(*args, **kwargs):
        prepared = prepare(*args, **kwargs)
        if pending:
            pending.pop()()
        return prepared

    monkeypatch.setattr(prepared_decisions, "prepare", prepared_then)


def test_the_common_decision_is_prepared_on_both_databases(svc, held):
    rita, d_id = held
    prepared = prepared_decisions.prepare(svc, rita, d_id, "approve", None, _now(), 4000)
    assert prepared is not None
    assert (prepared.call is None) == svc.db.is_sqlite  # PostgreSQL: one call's parameters


def test_the_decision_reads_the_deferral_and_its_agent_as_the_orm_loads_them(svc, held):
    _, d_id = held
    read = prepared_decisions.read_for_decision(svc, d_id)
    with svc.db.read() as session:
        loaded = session.get(Deferral, d_id)
        for column in Deferral.__table__.columns:
            assert getattr(read, column.key) == getattr(loaded, column.key), column.key
        for column in Agent.__table__.columns:
            assert getattr(read.agent, column.key) == getattr(loaded.agent, column.key)
    assert read.approvals == [] and read.approvers == []  # in no session: nothing to load
    assert prepared_decisions.read_for_decision(svc, "dfr_none") is None


def test_a_prepared_approval_writes_the_row_the_event_and_the_receipt(svc, held):
    rita, d_id = held
    outcome = decide(svc, rita, d_id, "approve", seen_ms=4000)
    assert outcome.status == "approved" and outcome.left == 0
    assert outcome.deferral.status == "approved" and outcome.deferral.receipt
    with svc.db.read() as session:
        row = session.get(Deferral, d_id)
        assert row.status == "approved" and row.decided_by == ["rita"]
        assert row.receipt == outcome.deferral.receipt and row.claimed_by is None
        assert session.scalars(select(Approval.username)).all() == ["rita"]
    (event,) = audit_events(svc, "deferral.approved")
    payload = json.loads(event.payload)
    assert payload["receipt"]["sub"] == d_id and payload["decided_by"] == ["rita"]
    assert chain_holds(svc)


def test_a_decision_taken_by_someone_else_meanwhile_is_refused_with_what_won(
    svc, held, monkeypatch
):
    rita, d_id = held
    _between_preparing_and_applying(
        monkeypatch,
        lambda: decide(svc, rita, d_id, "reject", "not now"),
    )
    with pytest.raises(DecisionRefused, match="already rejected by rita"):
        decide(svc, rita, d_id, "approve")
    with svc.db.read() as session:
        assert session.get(Deferral, d_id).status == "rejected"
        assert session.scalars(select(Approval)).all() == []  # the approval rolled back
    assert audit_events(svc, "deferral.approved") == []
    assert chain_holds(svc)


def test_an_edit_meanwhile_voids_the_prepared_decision_and_the_full_path_decides(
    svc, held, monkeypatch
):
    rita, d_id = held

    def edited():
        with svc.db.write() as session:
            session.execute(
                update(Deferral)
                .where(Deferral.id == d_id)
                .values(action_digest="sha256:" + "0" * 64)
            )

    _between_preparing_and_applying(monkeypatch, edited)
    outcome = decide(svc, rita, d_id, "approve")
    assert outcome.status == "approved"
    (event,) = audit_events(svc, "deferral.approved")
    # What was approved is the action as it was at the lock, not as prepared.
    payload = json.loads(event.payload)
    assert payload["action_digest"] == "sha256:" + "0" * 64
    assert payload["receipt"]["action_digest"] == "sha256:" + "0" * 64
    assert chain_holds(svc)


def test_a_lapsed_claim_meanwhile_is_refused(svc, held, monkeypatch):
    rita, d_id = held

    def lapsed():
        with svc.db.write() as session:
            session.execute(
                update(Deferral)
                .where(Deferral.id == d_id)
                .values(lease_expires_at=_now().replace(year=2000))
            )

    _between_preparing_and_applying(monkeypatch, lapsed)
    with pytest.raises(DecisionRefused, match="claim on this item lapsed"):
        decide(svc, rita, d_id, "approve")
    assert audit_events(svc, "deferral.approved") == []


def _now():
    from review.models import utcnow

    return utcnow()


def test_a_prepared_decision_renews_the_lease_on_the_rest_of_the_batch(svc, agent):
    rita = reviewer(svc)
    first, second = (agent.defer(refund()).get_json()["id"] for _ in range(2))
    claim_batch(svc, rita)
    soon = _now() + timedelta(seconds=60)
    with svc.db.write() as session:
        session.execute(update(Deferral).where(Deferral.id == second).values(lease_expires_at=soon))
    outcome = decide(svc, rita, first, "approve", seen_ms=4000)
    assert outcome.left == 1
    with svc.db.read() as session:
        after = session.get(Deferral, second).lease_expires_at
        if svc.db.is_sqlite:  # stored in the column type's own format, as claimed_at is
            lengths = session.execute(
                text(
                    "SELECT length(lease_expires_at), length(claimed_at) FROM deferrals"
                    " WHERE id = :id"
                ),
                {"id": second},
            ).one()
            assert lengths[0] == lengths[1]
    assert after - soon >= timedelta(seconds=svc.settings.lease_seconds - 120)


def test_a_callback_url_set_meanwhile_still_gets_its_callback(svc, held, monkeypatch):
    rita, d_id = held
    with svc.db.read() as session:
        agent_id = session.get(Deferral, d_id).agent_id
        assert not session.get(Agent, agent_id).callback_url  # prepared without a callback

    def callbacks_on():
        with svc.db.write() as session:
            session.execute(
                update(Agent)
                .where(Agent.id == agent_id)
                .values(callback_url="https://agent.example/callback")
            )

    _between_preparing_and_applying(monkeypatch, callbacks_on)
    assert decide(svc, rita, d_id, "reject", "not now").status == "rejected"
    with svc.db.read() as session:
        owed = session.scalars(
            select(OutboxEvent.event_type).where(OutboxEvent.deferral_id == d_id)
        )
        assert owed.all() == ["deferral.decided"]
    assert chain_holds(svc)
