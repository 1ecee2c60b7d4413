"""The README's five lines, as a new user runs them: the decorated function defers, the
deferral is in the queue, a reviewer approves it through the reviewer pages, the function
runs once, and its execution is on the deferral's page."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from countersign_client import Countersign, RetryPolicy

from tests.client_support import next_deferral
from tests.helpers import logged_in

pytest_plugins = ["tests.client_server"]


@pytest.fixture
def billing_bot(countersign_server, make_agent):
    registered = make_agent("billing-bot")
    cs = Countersign(
        countersign_server.base_url,
        agent=registered.slug,
        secret=registered.secret,
        retry=RetryPolicy(first_delay=0.05, max_delay=0.2, poll_max_delay=0.2),
    )
    yield cs
    cs.close()


def test_the_readme_five_lines_run_the_refund_once_a_reviewer_approves_it_in_the_pages(
    app, svc, billing_bot, people
):
    refunds = []

    @billing_bot.requires_approval(
        tool="billing.refund", summary="Refund {amount} on {invoice}",
        on_behalf_of="alice@example.com", timeout=60,
    )  # fmt: skip
    def refund(invoice: str, amount: int) -> dict:
        refunds.append((invoice, amount))
        return {"refund": "re_1", "amount": amount}

    with ThreadPoolExecutor(1) as pool:
        call = pool.submit(refund, "INV-1", 740)
        d_id = next_deferral(svc)
        rita = logged_in(app, "rita")
        assert "Refund 740 on INV-1" in rita.get("/queue").get_data(as_text=True)
        assert not refunds  # held until a reviewer decides
        rita.post("/batch/start")
        answer = rita.post(f"/batch/{d_id}/approve", htmx=True).get_data(as_text=True)
        assert "Approved" in answer
        assert call.result(timeout=60) == {"refund": "re_1", "amount": 740}
    assert refunds == [("INV-1", 740)]  # once
    page = rita.get(f"/deferrals/{d_id}").get_data(as_text=True)
    assert "succeeded" in page and "re_1" in page
