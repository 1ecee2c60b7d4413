"""Claims under concurrency: no deferral is ever held by two reviewers."""

import threading
from collections import Counter

import pytest
from sqlalchemy import event, func, select, update

from review.audit.verify import verify_chain
from review.models import AuditEvent, Deferral
from review.reviewing.claims import claim_batch
from tests.helpers import refund, reviewer


def test_eight_concurrent_claimers_never_share_a_deferral(make_app, make_agent, svc):
    app = make_app(agent_rate=0)
    agent = make_agent().on(app)
    for i in range(30):
        assert agent.defer(refund(summary=f"item {i}")).status_code == 202
    holders = [reviewer(svc, f"reviewer{i}") for i in range(8)]
    claimed: dict[str, list[str]] = {}
    errors = []
    barrier = threading.Barrier(8)

    def claim(holder):
        try:
            barrier.wait()
            claimed[holder.username] = claim_batch(svc, holder)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=claim, args=(h,)) for h in holders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    everyone = [d for ids in claimed.values() for d in ids]
    assert len(everyone) == len(set(everyone)) == 30  # all taken, none twice
    assert all(len(ids) <= 5 for ids in claimed.values())
    with svc.db.read() as session:
        by_id = dict(session.execute(select(Deferral.id, Deferral.claimed_by)).all())
        owner = {h.id: h.username for h in holders}
        for username, ids in claimed.items():
            assert all(owner[by_id[d]] == username for d in ids)
        claims = Counter(
            session.scalars(
                select(AuditEvent.deferral_id).where(AuditEvent.event_type == "deferral.claimed")
            )
        )
        assert set(claims.values()) == {1} and len(claims) == 30
        assert (
            session.scalar(
                select(func.count()).select_from(Deferral).where(Deferral.status == "pending")
            )
            == 0
        )
        assert verify_chain(session).ok


def test_a_batch_takes_what_is_handed_to_the_reviewer_first_then_the_most_urgent(
    make_app, make_agent, svc
):
    app = make_app(agent_rate=0)
    agent = make_agent().on(app)
    ids = [agent.defer(refund(summary=f"item {i}")).get_json()["id"] for i in range(8)]
    rita, tom = reviewer(svc, "rita"), reviewer(svc, "tom")
    with svc.db.write() as session:
        for i, d_id in enumerate(ids):  # ids[7] the most urgent
            handed = {0: "rita", 1: "rita", 7: "tom"}.get(i)
            session.execute(
                update(Deferral).where(Deferral.id == d_id).values(rank=i * 10, handed_to=handed)
            )
    assert claim_batch(svc, rita) == [ids[1], ids[0], ids[6], ids[5], ids[4]]
    assert claim_batch(svc, tom) == [ids[7], ids[3], ids[2]]


def test_the_batch_pick_reads_down_an_index_rather_than_sort_every_pending_row(
    make_app, make_agent, svc
):
    if not svc.db.is_sqlite:
        pytest.skip("SQLite's plan; PostgreSQL's depends on its statistics")
    app = make_app(agent_rate=0)
    agent = make_agent().on(app)
    for i in range(12):
        agent.defer(refund(summary=f"item {i}"))
    seen = []

    def note(_conn, _cursor, statement, parameters, _context, _executemany):
        if "UPDATE deferrals" in statement and "mine" in statement:
            seen.append((statement, parameters))

    event.listen(svc.db.engine, "before_cursor_execute", note)
    try:
        assert len(claim_batch(svc, reviewer(svc))) == 5
    finally:
        event.remove(svc.db.engine, "before_cursor_execute", note)
    [(statement, parameters)] = seen
    with svc.db.engine.connect() as conn:
        cursor = conn.connection.dbapi_connection.cursor()
        plan = [row[3] for row in cursor.execute(f"EXPLAIN QUERY PLAN {statement}", parameters)]
    # Those handed to the reviewer, a few, sorted; the rest read in rank order, no sort.
    searches = [step for step in plan if step.startswith(("SEARCH deferrals", "SCAN deferrals"))]
    assert searches[0].startswith("SEARCH deferrals USING INDEX ix_deferrals_handed_to"), plan
    assert searches[1].startswith("SEARCH deferrals USING INDEX sqlite_autoindex"), plan  # by id
    assert searches[2].startswith("SEARCH deferrals USING INDEX ix_deferrals_status_rank"), plan
    assert sum("TEMP B-TREE" in step for step in plan) == 1, plan  # mine's
