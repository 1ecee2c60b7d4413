"""Helpers of the client's tests: the reviewers' side of the service, and reading its rows.

(Kept apart from tests/client_server.py, which the tests load as a pytest plugin and so
must not import.)
"""

from __future__ import annotations

from tests.helpers import wait_for


def decide_now(svc, holder, deferral_id: str, verdict: str, reason: str | None = None) -> str:
    """`holder` claims what is waiting and decides `deferral_id`; the status it ended in."""
    from review.reviewing.claims import claim_batch
    from review.reviewing.decisions import decide

    claim_batch(svc, holder)
    return decide(svc, holder, deferral_id, verdict, reason).status


def deferral_ids(svc) -> set[str]:
    """Every deferral's id."""
    from sqlalchemy import select

    from review.models import Deferral

    with svc.db.read() as session:
        return set(session.scalars(select(Deferral.id)))


def next_deferral(svc, known: set[str] | frozenset = frozenset(), timeout: float = 15.0) -> str:
    """The id of the one deferral not in `known`, once some client has made it."""
    wait_for(lambda: deferral_ids(svc) - known, timeout=timeout, message="no new deferral")
    (new,) = deferral_ids(svc) - known
    return new
