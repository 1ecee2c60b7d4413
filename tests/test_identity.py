"""Separation of duties sees through look-alike identities (review/identity.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from review.identity import identity_key
from review.models import Deferral, User, utcnow
from review.reviewing.claims import Holder
from review.reviewing.decisions import DecisionRefused, decide
from tests.helpers import Browser

RITA = "rita@example.com"
LOOK_ALIKES = [
    " rita@example.com",  # leading space
    "rita@example.com\t",  # trailing white space
    "ri\u200bta@example.com",  # zero-width space
    "ri\u200dta@example.com",  # zero-width joiner
    "\u202erita@example.com",  # bidi override
    "r\u0456ta@example.com",  # Cyrillic i
    "rit\u0430@example.com",  # Cyrillic a
    "ＲＩＴＡ@example.com",  # full-width capitals
    "RITA@EXAMPLE.COM",
    "rIta@example.com",  # capital I for i
    "r1ta@example.com",  # digit one
]


@pytest.mark.parametrize("look_alike", LOOK_ALIKES)
def test_a_look_alike_has_the_same_key(look_alike):
    assert identity_key(look_alike) == identity_key(RITA)


@pytest.mark.parametrize("other", ["rita@example.org", "sam@example.com", "ritaa@example.com"])
def test_a_different_identity_has_a_different_key(other):
    assert identity_key(other) != identity_key(RITA)


def _defer_for(agent, principal: str) -> str:
    body = {
        "action": {"tool": "billing.refund", "args": {"invoice": "INV-9", "amount": 10}},
        "summary": f"Refund for {principal!r}",
        "on_behalf_of": {"id": principal},
    }
    response = agent.defer(body)
    assert response.status_code == 202, response.get_json()
    return response.get_json()["id"]


@pytest.mark.parametrize("look_alike", [" rita@example.com", "ri\u200bta@example.com",
                                        "r\u0456ta@example.com"])  # fmt: skip
def test_a_deferral_for_a_look_alike_of_the_reviewer_is_withheld_from_them(
    app, svc, agent, people, look_alike
):
    mine = _defer_for(agent, look_alike)
    other = _defer_for(agent, "someone@example.com")
    Browser(app.test_client(), "rita").post("/batch/start")
    with svc.db.read() as session:
        assert session.get(Deferral, mine).status == "pending"  # never handed to rita
        assert session.get(Deferral, other).status == "in_review"
    # Another reviewer may take it.
    Browser(app.test_client(), "sam").post("/batch/start")
    with svc.db.read() as session:
        assert session.get(Deferral, mine).status == "in_review"


def test_a_reviewer_holding_a_look_alike_deferral_cannot_approve_it(app, svc, agent, people):
    mine = _defer_for(agent, "RIT\u0410@example.com\u200b")  # Cyrillic A, zero-width space
    with svc.db.write() as session:
        rita_id = session.scalar(select(User.id).where(User.username == "rita"))
        session.execute(
            update(Deferral)
            .where(Deferral.id == mine)
            .values(
                status="in_review",
                claimed_by=rita_id,
                lease_expires_at=utcnow() + timedelta(minutes=5),
            )
        )
    holder = Holder(rita_id, "rita", frozenset({"rita", RITA}))
    with pytest.raises(DecisionRefused, match="your own behalf"):
        decide(svc, holder, mine, "approve")


def test_intake_stores_the_principal_key_beside_the_id_as_sent(svc, agent):
    d_id = _defer_for(agent, " Rita@Example.com")
    with svc.db.read() as session:
        row = session.get(Deferral, d_id)
        assert row.principal_id == " Rita@Example.com"
        assert row.principal_key == identity_key(RITA)
