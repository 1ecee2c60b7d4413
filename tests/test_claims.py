"""Claims under concurrency: no deferral is ever held by two reviewers."""

import threading
from collections import Counter

from sqlalchemy import func, select

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
