"""The Python client with an edited approval, against a real Countersign (gunicorn): the
gate and the decorator run the approved (edited) arguments, and the
execution they report carries the approved digest."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from countersign_client import Countersign, RetryPolicy, action_digest

from review.reviewing.claims import claim_batch
from review.reviewing.edits import edit_and_approve
from tests.client_support import next_deferral
from tests.helpers import reviewer

pytest_plugins = ["tests.client_server"]

QUICK = RetryPolicy(first_delay=0.05, max_delay=0.2, poll_max_delay=0.2)


@pytest.fixture
def cs(countersign_server, make_agent):
    registered = make_agent("billing-bot")
    client = Countersign(
        countersign_server.base_url,
        agent=registered.slug,
        secret=registered.secret,
        on_behalf_of="alice@example.com",
        retry=QUICK,
    )
    yield client
    client.close()


def edit_now(svc, holder, deferral_id, args) -> str:
    claim_batch(svc, holder)
    return edit_and_approve(svc, holder, deferral_id, args).status


def test_the_gate_runs_the_edited_args_and_reports_the_edited_digest(cs, svc):
    rita = reviewer(svc, "rita")
    asked = {"customer": "C-1", "text": "refund of 740 sent"}
    edited = {"customer": "C-1", "text": "refund of 500 sent"}
    ran: list = []

    def gated():
        with cs.gate(tool="crm.note", args=dict(asked), summary="Note", timeout=30) as approved:
            ran.append(approved.args)
            approved.result = {"note": "N-1"}

    with ThreadPoolExecutor(max_workers=1) as pool:
        gate = pool.submit(gated)
        d_id = next_deferral(svc)
        assert edit_now(svc, rita, d_id, edited) == "approved"
        gate.result(timeout=30)
    assert ran == [edited]
    read = cs.get(d_id)
    assert read.decision.edited is True
    assert read.decision.original_action_digest == action_digest("crm.note", asked)
    assert read.action_digest == action_digest("crm.note", edited)
    assert read.execution["outcome"] == "succeeded"


def test_the_decorator_is_called_with_the_edited_amount(cs, svc):
    rita = reviewer(svc, "rita")
    calls = []

    @cs.requires_approval(tool="billing.refund", summary="Refund {amount}", timeout=30)
    def refund(invoice: str, amount: int) -> dict:
        calls.append((invoice, amount))
        return {"refunded": amount}

    with ThreadPoolExecutor(max_workers=1) as pool:
        call = pool.submit(refund, "INV-1", 740)
        d_id = next_deferral(svc)
        assert edit_now(svc, rita, d_id, {"invoice": "INV-1", "amount": 500}) == "approved"
        assert call.result(timeout=30) == {"refunded": 500}
    assert calls == [("INV-1", 500)]
    assert cs.get(d_id).execution["result"] == {"refunded": 500}
