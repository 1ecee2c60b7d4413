"""One-row reads on the driver (review/driver_statements.py `Reading`, review/db.py
`first_row_unpinged`): the row holds what SQLAlchemy's `conn.execute(...).first()`
reads, column by column, on both databases."""

from __future__ import annotations

import pytest
from sqlalchemy import bindparam, select

from review.driver_statements import driver
from review.models import Agent, AuditEvent, Deferral, PendingDecision
from review.reviewing.claims import claim_batch
from review.reviewing.decisions import decide
from tests.helpers import refund, reviewer


def _as_sqlalchemy_reads(svc, statement, params):
    with svc.db.engine.connect() as conn:
        return conn.execute(statement, params).first()


def _every_column(*tables):
    return [column.label(f"{t.name}_{column.key}") for t in tables for column in t.columns]


@pytest.fixture
def decided(svc, agent):
    """Two deferrals: one approved by rita (datetimes, JSON, a receipt, an event), one
    pending (its decision columns NULL)."""
    rita = reviewer(svc)
    ended = agent.defer(refund(summary="Refund 1")).get_json()["id"]
    pending = agent.defer(refund(summary="Refund 2")).get_json()["id"]
    claim_batch(svc, rita)
    decide(svc, rita, ended, "approve", seen_ms=4200)
    return ended, pending


def test_a_deferral_and_its_agent_read_on_the_driver_as_sqlalchemy_reads_them(svc, decided):
    statement = (
        select(*_every_column(Deferral.__table__, Agent.__table__))
        .join_from(Deferral.__table__, Agent.__table__, Agent.id == Deferral.agent_id)
        .where(Deferral.id == bindparam("id"))
    )
    for d_id in decided:
        row = svc.db.first_row_unpinged(statement, {"id": d_id})
        expected = _as_sqlalchemy_reads(svc, statement, {"id": d_id})
        assert tuple(row) == tuple(expected)
        for key, value in expected._mapping.items():
            assert getattr(row, key) == value, key
            assert type(getattr(row, key)) is type(value), key
    assert row.deferrals_decided_at is None and row.deferrals_status == "in_review"


def test_an_event_read_on_the_driver_as_sqlalchemy_reads_it(svc, decided):
    ended, _ = decided
    events = AuditEvent.__table__
    statement = (
        select(*events.columns)
        .where(events.c.deferral_id == bindparam("id"), events.c.event_type == "deferral.approved")
        .order_by(events.c.seq.desc())
    )
    row = svc.db.first_row_unpinged(statement, {"id": ended})
    expected = _as_sqlalchemy_reads(svc, statement, {"id": ended})
    assert row is not None and tuple(row) == tuple(expected)
    assert row.event_type == "deferral.approved"  # a literal bound value, held by the statement


def test_a_read_that_finds_nothing_answers_none(svc, decided):
    held = PendingDecision.__table__
    statement = select(held.c.deferral_id).where(held.c.deferral_id == bindparam("id"))
    assert svc.db.first_row_unpinged(statement, {"id": decided[0]}) is None


def test_a_value_it_was_not_given_is_refused_before_anything_is_sent(svc):
    statement = select(Deferral.id).where(Deferral.id == bindparam("id"))
    with pytest.raises(KeyError, match="id"):
        svc.db.first_row_unpinged(statement, {})


def test_an_expanding_parameter_is_refused(svc):
    statement = select(Deferral.id).where(Deferral.id.in_(bindparam("ids", expanding=True)))
    with pytest.raises(ValueError, match="expanding"):
        driver.reading(svc.db.engine, statement)
