"""PostgreSQL: a prepared decision is written by one call of `countersign_decide`
(migration 0027, review/reviewing/decision_call.py). It wins, or it writes nothing and
says why, and the full path then tells the reviewer what won."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from review.agents.killswitch import Actor, kill
from review.audit.verify import verify_chain
from review.migrate import downgrade, upgrade
from review.models import Approval, Deferral, utcnow
from review.notifications.models import Notification, NotificationItem
from review.reviewing import decision_call, prepared_decisions
from review.reviewing.claims import claim_batch
from review.reviewing.decision_checks import _DECISIONS_OF
from review.reviewing.decisions import DecisionRefused, decide
from tests.helpers import audit_events, refund, reviewer
from tests.prepared_races import (
    chain_holds,
    drop_every_connection,
    record_calls,
    run_once_prepared,
    set_deferral,
)


@pytest.fixture(autouse=True)
def _postgres_only(svc):
    if svc.db.is_sqlite:
        pytest.skip("SQLite writes a prepared decision under its write lock instead")


@pytest.fixture
def calls(monkeypatch):
    """What each call of the function answered, in order."""
    return record_calls(monkeypatch, decision_call, "call_decide", keep=lambda answer: answer[0])


@pytest.fixture
def held(svc, agent):
    rita = reviewer(svc)
    d_id = agent.defer(refund()).get_json()["id"]
    claim_batch(svc, rita)
    return rita, d_id


def test_a_decision_is_written_by_one_call_that_wins(svc, agent, calls):
    rita = reviewer(svc)
    first, second = (agent.defer(refund()).get_json()["id"] for _ in range(2))
    claim_batch(svc, rita)
    outcome = decide(svc, rita, first, "approve", seen_ms=4000)
    assert calls == ["decided"]
    assert outcome.status == "approved" and outcome.left == 1
    with svc.db.read() as session:
        row = session.get(Deferral, first)
        assert row.status == "approved" and row.decided_by == ["rita"]
        assert row.receipt == outcome.deferral.receipt and row.claimed_by is None
        assert session.scalars(select(Approval.username)).all() == ["rita"]
        rest = session.get(Deferral, second)
        assert rest.lease_expires_at > utcnow() + timedelta(seconds=svc.settings.lease_seconds - 60)
    (event,) = audit_events(svc, "deferral.approved")
    payload = json.loads(event.payload)
    assert payload["receipt"]["sub"] == first and payload["fast"] is outcome.fast
    assert chain_holds(svc)


def test_a_rejection_is_written_by_one_call_without_an_approval(svc, held, calls):
    rita, d_id = held
    outcome = decide(svc, rita, d_id, "reject", "not now")
    assert calls == ["decided"] and outcome.status == "rejected" and outcome.left == 0
    with svc.db.read() as session:
        assert session.get(Deferral, d_id).decision_reason == "not now"
        assert session.scalars(select(Approval)).all() == []
    assert chain_holds(svc)


def test_it_loses_to_another_reviewer_who_decided_meanwhile(svc, held, calls, monkeypatch):
    rita, d_id = held
    sam = reviewer(svc, "sam")

    def sam_rejects():
        set_deferral(svc, d_id, claimed_by=sam.id)
        decide(svc, sam, d_id, "reject", "too big")

    run_once_prepared(monkeypatch, prepared_decisions, sam_rejects)
    with pytest.raises(DecisionRefused, match="already rejected by sam: too big"):
        decide(svc, rita, d_id, "approve")
    assert calls == ["decided", "ended"]  # sam's call, then rita's
    with svc.db.read() as session:
        assert session.scalars(select(Approval)).all() == []  # rita's was never written
    assert audit_events(svc, "deferral.approved") == []
    assert chain_holds(svc)


def test_it_loses_to_another_reviewer_who_holds_it_now(svc, held, calls, monkeypatch):
    rita, d_id = held
    sam = reviewer(svc, "sam")
    run_once_prepared(
        monkeypatch, prepared_decisions, lambda: set_deferral(svc, d_id, claimed_by=sam.id)
    )
    with pytest.raises(DecisionRefused, match="another reviewer holds it now"):
        decide(svc, rita, d_id, "approve")
    assert calls == ["not_held"]
    with svc.db.read() as session:
        assert session.get(Deferral, d_id).status == "in_review"


def test_it_loses_to_a_kill(svc, agent, held, calls, monkeypatch):
    rita, d_id = held
    run_once_prepared(
        monkeypatch,
        prepared_decisions,
        lambda: kill(svc, agent.slug, Actor("user", "olivia"), "runaway"),
    )
    with pytest.raises(DecisionRefused, match="already killed by olivia: runaway"):
        decide(svc, rita, d_id, "approve")
    assert calls == ["ended"]
    with svc.db.read() as session:
        assert session.get(Deferral, d_id).status == "killed"
        assert session.scalars(select(Approval)).all() == []
    assert chain_holds(svc)


def test_it_loses_when_the_lease_lapsed(svc, held, calls, monkeypatch):
    rita, d_id = held
    run_once_prepared(
        monkeypatch,
        prepared_decisions,
        lambda: set_deferral(svc, d_id, lease_expires_at=utcnow().replace(year=2000)),
    )
    with pytest.raises(DecisionRefused, match="claim on this item lapsed"):
        decide(svc, rita, d_id, "approve")
    assert calls == ["not_held"]
    assert audit_events(svc, "deferral.approved") == []


def test_an_edit_meanwhile_loses_the_call_and_the_full_path_decides_the_new_action(
    svc, held, calls, monkeypatch
):
    rita, d_id = held
    digest = "sha256:" + "0" * 64
    run_once_prepared(
        monkeypatch, prepared_decisions, lambda: set_deferral(svc, d_id, action_digest=digest)
    )
    outcome = decide(svc, rita, d_id, "approve")
    assert calls == ["changed"] and outcome.status == "approved"
    (event,) = audit_events(svc, "deferral.approved")
    payload = json.loads(event.payload)
    assert payload["action_digest"] == digest and payload["receipt"]["action_digest"] == digest
    assert chain_holds(svc)


def test_a_callback_url_set_meanwhile_loses_the_call(svc, agent, held, calls, monkeypatch):
    rita, d_id = held

    def callback_set():
        with svc.db.write() as session:
            session.execute(
                text("UPDATE agents SET callback_url = 'https://example.com/cb' WHERE slug = :s"),
                {"s": agent.slug},
            )

    run_once_prepared(monkeypatch, prepared_decisions, callback_set)
    assert decide(svc, rita, d_id, "approve").status == "approved"
    assert calls == ["changed"]  # the full path wrote the callback the prepared call had not
    with svc.db.read() as session:
        n = session.execute(
            text("SELECT count(*) FROM outbox_events WHERE deferral_id = :d"), {"d": d_id}
        )
        assert n.scalar() == 1


def test_a_deferral_a_notification_told_of_meanwhile_loses_the_call_to_the_full_path(
    svc, held, calls, monkeypatch
):
    rita, d_id = held

    def told():
        with svc.db.write() as session:
            message = Notification(
                id="ntf_meanwhile",
                kind="deferral.waiting",
                channel="email",
                next_attempt_at=utcnow(),
            )
            session.add(message)
            session.flush()
            session.add(NotificationItem(notification_id=message.id, deferral_id=d_id))

    run_once_prepared(monkeypatch, prepared_decisions, told)
    assert decide(svc, rita, d_id, "approve").status == "approved"
    assert calls == ["owes_more"]  # the full path ended it, with what it owes the message
    with svc.db.read() as session:
        assert session.get(Deferral, d_id).decided_by == ["rita"]
    assert chain_holds(svc)


def test_a_burst_of_concurrent_decisions_keeps_the_chain_whole(svc, agent, calls):
    names = ["rita", "sam", "tess"]  # five each: 15 deferrals, under the agent's rate
    holders = [reviewer(svc, name) for name in names]
    for _ in range(len(holders) * 5):
        assert agent.defer(refund()).status_code == 202
    batches = {h.username: claim_batch(svc, h) for h in holders}
    assert sum(len(b) for b in batches.values()) == len(holders) * 5
    failures: list[BaseException] = []

    def decide_all(holder):
        try:
            for i, d_id in enumerate(batches[holder.username]):
                verdict = "approve" if i % 2 == 0 else "reject"
                decide(svc, holder, d_id, verdict, None if i % 2 == 0 else "no", seen_ms=4000)
        except BaseException as error:  # noqa: BLE001  reported below
            failures.append(error)

    threads = [threading.Thread(target=decide_all, args=(h,)) for h in holders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert failures == []
    assert calls == ["decided"] * len(holders) * 5
    with svc.db.read() as session:
        statuses = session.scalars(select(Deferral.status)).all()
        assert sorted(set(statuses)) == ["approved", "rejected"]
        assert verify_chain(session).ok
    assert len(audit_events(svc, "deferral.approved")) == len(holders) * 3


def test_a_decision_on_connections_the_server_dropped_is_written_once(svc, agent, calls):
    """The read and the call take their connections without the pool's ping: when the
    server has dropped the pooled ones (a restart, a failover), each runs again on a
    pinged connection."""
    rita = reviewer(svc)
    first, second = (agent.defer(refund()).get_json()["id"] for _ in range(2))
    claim_batch(svc, rita)
    drop_every_connection(svc.db.url)
    assert decide(svc, rita, first, "approve").status == "approved"
    prepared = prepared_decisions.prepare(svc, rita, second, "reject", "no", utcnow(), None)
    drop_every_connection(svc.db.url)
    assert prepared_decisions.apply(svc, rita, prepared, utcnow()).status == "rejected"
    assert calls == ["decided", "decided"]
    assert len(audit_events(svc, "deferral.approved")) == 1
    assert len(audit_events(svc, "deferral.rejected")) == 1
    assert chain_holds(svc)


def test_the_function_takes_the_reviewers_decision_lock_of_the_full_path(svc):
    """The key space of one_reviewer_at_a_time's advisory lock is written into the
    function (migration 0027): the two must name the same lock."""
    with svc.db.engine.connect() as conn:
        source = conn.execute(
            text("SELECT prosrc FROM pg_proc WHERE proname = 'countersign_decide'")
        ).scalar_one()
    assert f"pg_advisory_xact_lock({_DECISIONS_OF}, p_holder)" in source


def test_the_migration_goes_down_and_up_again(svc, held, calls):
    def defined() -> bool:
        with svc.db.engine.connect() as conn:
            found = conn.execute(
                text("SELECT count(*) FROM pg_proc WHERE proname = :n"), {"n": "countersign_decide"}
            )
            return found.scalar() == 1

    assert defined()
    downgrade(svc.db, "0026")
    assert not defined()
    upgrade(svc.db)
    assert defined()
    rita, d_id = held
    assert decide(svc, rita, d_id, "approve").status == "approved"
    assert calls == ["decided"]
