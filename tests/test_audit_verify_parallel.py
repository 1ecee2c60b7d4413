"""Verifying the chain in parallel ranges finds exactly what verifying it in one walk finds.

The ranges are made small here (MIN_EVENTS_PER_JOB) so that a short chain is cut into
three, each in a process of its own against the same database.
"""

import pytest
from sqlalchemy import delete, update

from review.audit import parallel_verify
from review.audit.verify import verify_chain
from review.models import AuditEvent, AuditHead
from tests.helpers import append_events, as_an_attacker


@pytest.fixture
def three_ranges(monkeypatch):
    monkeypatch.setattr(parallel_verify, "MIN_EVENTS_PER_JOB", 4)
    assert parallel_verify.ranges(12, 3) == [(1, 4), (5, 8), (9, 12)]


def both_ways(svc, remember=None):
    with svc.db.read() as session:
        alone = verify_chain(session, remember=remember)
    with svc.db.read() as session:
        parallel = verify_chain(session, remember=remember, jobs=3)
    assert parallel == alone
    return parallel


def test_a_sound_chain_verifies_in_parallel_ranges(svc, three_ranges):
    append_events(svc, 12, "test.event", note="héllo ✓")
    result = both_ways(svc, remember={(0, 3), (0, 8), (0, 12)})  # (shard, place)
    assert result.ok and result.count == 12
    assert set(result.hashes) == {(0, 3), (0, 8), (0, 12)}


def test_an_edit_in_a_later_range_is_named(svc, three_ranges):
    append_events(svc, 12, "test.event")
    as_an_attacker(svc, update(AuditEvent).where(AuditEvent.seq == 10).values(actor_id="x"))
    result = both_ways(svc)
    assert not result.ok and result.bad_seq == 10 and "edited" in result.problem


def test_a_deleted_event_at_a_range_boundary_is_named(svc, three_ranges):
    append_events(svc, 12, "test.event")
    as_an_attacker(svc, delete(AuditEvent).where(AuditEvent.seq == 5))
    result = both_ways(svc)
    assert not result.ok and result.bad_seq == 5 and "gap" in result.problem


def test_a_range_rewritten_consistently_still_breaks_the_join(svc, three_ranges):
    """An attacker who rewrites events 5-8 with hashes that hold among themselves still
    breaks event 5's link to event 4, which only the join sees."""
    append_events(svc, 12, "test.event")
    with svc.db.read() as session:
        hashes = dict(session.query(AuditEvent.seq, AuditEvent.hash))
    forged = "f" * 64
    as_an_attacker(svc, update(AuditEvent).where(AuditEvent.seq == 5).values(prev_hash=forged))
    result = both_ways(svc)
    assert not result.ok and result.bad_seq == 5
    assert hashes[4] != forged


def test_a_removed_tail_is_caught_by_the_head_in_parallel(svc, three_ranges):
    append_events(svc, 12, "test.event")
    as_an_attacker(svc, delete(AuditEvent).where(AuditEvent.seq >= 11))
    result = both_ways(svc)
    assert not result.ok and "removed" in result.problem


def test_events_appended_during_a_verify_are_left_for_the_next(svc):
    """The head is read first and bounds the walk: later events are not a moved head."""
    append_events(svc, 3, "test.event")
    with svc.db.read() as session:
        head = session.get(AuditHead, 0)  # these events are all shard 0's
        assert head.seq == 3
        append_events(svc, 2, "test.event")  # committed by another session meanwhile
        result = verify_chain(session)
    assert result.ok and result.count in (3, 5)  # SQLite's snapshot may already hold 5


def test_audit_verify_takes_jobs(svc, runner, three_ranges):
    append_events(svc, 12, "test.event")
    result = runner.invoke(args=["audit", "verify", "--jobs", "3"])
    assert result.exit_code == 0, result.output
    assert "OK 12 events" in result.output


def test_a_worker_that_fails_is_an_error_not_a_verdict(tmp_path):
    """A range whose worker cannot read is never taken as verified."""
    job = {"dialect": "sqlite", "connect": ([str(tmp_path / "none" / "x.db")], {})}
    job.update(first=1, last=10, heads={0: (10, "0" * 64)}, remember=set())
    worker = parallel_verify._start(job)
    try:
        with pytest.raises(RuntimeError, match="a verify worker failed"):
            parallel_verify._result(worker)
    finally:
        worker.wait()
        worker.stdout.close()
        worker.stderr.close()
