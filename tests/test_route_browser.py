"""Routing, quorums, snooze and hand-over in a real browser (Debian's Chromium through
Playwright): who may claim, "1 of 3 approvals", and putting an item aside."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from review.groups import add_member, create_group
from review.users import create_user
from tests.browser_support import (
    ARTIFACTS,
    PASSWORD,
    live_server,
    own_windows,
    settled,
    start_batch,
    to_a_new_page,
)
from tests.helpers import refund
from tests.test_browser import CONSOLE_ERRORS, Site, status
from tests.test_edit_browser import login

pytestmark = pytest.mark.browser

POLICY = """
[[rule]]
id = "refund"
kind = "tool"
match = ["billing.refund"]
points = 10
group = "finance"
detail = "{tool} moves money"

[[rule]]
id = "big_refund"
kind = "argument_over"
keys = ["amount"]
threshold = 1000
points = 10
quorum = 3
detail = "{key} {value} > {threshold}"
"""


@pytest.fixture
def site(chromium, make_app, make_agent, people, tmp_path) -> Iterator[Site]:
    """rita and sam review (not in finance); fred, fay and flo are finance."""
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    app = make_app(agent_rate=0, policy_file=str(policy))
    svc = app.extensions["countersign"]
    with svc.db.write() as session:
        create_group(session, "finance")
        for name in ("fred", "fay", "flo"):
            create_user(session, name, "reviewer", PASSWORD, email=f"{name}@example.com")
            session.flush()
            add_member(session, "finance", name)
    agent = make_agent().on(app)
    CONSOLE_ERRORS.clear()
    with live_server(app) as url, own_windows(chromium):
        yield Site(url, agent, chromium)


def shots(page, name: str) -> None:
    """The page at 1280x720 and at 1440x900, as test-artifacts/NAME-WxH.png."""
    ARTIFACTS.mkdir(exist_ok=True)
    for width, height in ((1280, 720), (1440, 900)):
        page.set_viewport_size({"width": width, "height": height})
        page.screenshot(path=str(ARTIFACTS / f"{name}-{width}x{height}.png"))
    page.set_viewport_size({"width": 1280, "height": 720})


def refund_of(amount: int, summary: str) -> dict:
    body = refund(summary=summary)
    body["action"]["args"]["amount"] = amount
    return body


def test_a_non_member_cannot_claim_a_routed_item_and_a_member_can(site):
    d_id = site.agent.defer(refund_of(740, "Refund $740 (finance only)")).get_json()["id"]
    rita = login(site, "rita")
    row = rita.locator("tr", has_text="Refund $740 (finance only)")
    expect(row).to_contain_text("group finance")
    start_batch(rita)
    expect(rita.get_by_text("routed to groups you are not in: finance")).to_be_visible()
    row = rita.locator("tr", has_text="Refund $740 (finance only)")
    expect(row).to_contain_text("Routed to group finance: you are not a member")
    expect(row.get_by_role("button", name="Claim")).to_have_count(0)
    shots(rita, "route-non-member-queue")
    row.get_by_role("link", name="Refund $740 (finance only)").click()
    expect(rita.get_by_text("only its members (and admins) may claim it")).to_be_visible()
    expect(rita.get_by_role("button", name="Claim", exact=True)).to_have_count(0)
    expect(rita.get_by_role("button", name="Approve", exact=True)).to_have_count(0)
    shots(rita, "route-non-member-refused")
    fred = login(site, "fred")
    fred.goto(f"{site.url}/deferrals/{d_id}")
    to_a_new_page(fred, fred.get_by_role("button", name="Claim", exact=True))
    fred.get_by_role("button", name="Approve", exact=True).click()
    expect(fred.locator(f"#card-{d_id}")).to_contain_text("Approved.")
    assert status(site.agent, d_id)["status"] == "approved"
    assert CONSOLE_ERRORS == []


def test_three_distinct_approvers_decide_a_quorum_of_three(site):
    d_id = site.agent.defer(refund_of(5000, "Refund $5,000 (three approvers)")).get_json()["id"]
    fred = login(site, "fred")
    start_batch(fred)
    card = fred.locator(f"#card-{d_id}")
    expect(card).to_contain_text("needs 3 approvers")
    card.get_by_role("button", name="Approve", exact=True).click()
    expect(fred.locator(f"#card-{d_id}")).to_contain_text("1 of 3 approvals")
    fay = login(site, "fay")
    expect(fay.locator("tr", has_text="three approvers")).to_contain_text("1 of 3 approvals")
    start_batch(fay)
    expect(fay.locator(f"#card-{d_id}")).to_contain_text("1 of 3 approvals (by fred)")
    shots(fay, "route-quorum-1-of-3")
    fay.locator(f"#card-{d_id}").get_by_role("button", name="Approve", exact=True).click()
    expect(fay.locator(f"#card-{d_id}")).to_contain_text("2 of 3 approvals")
    # fred already approved: he is not offered it again.
    fred.goto(site.url + "/queue")
    start_batch(fred)
    expect(fred.get_by_text("Nothing to review right now")).to_be_visible()
    flo = login(site, "flo")
    start_batch(flo)
    expect(flo.locator(f"#card-{d_id}")).to_contain_text("2 of 3 approvals (by fred, fay)")
    flo.locator(f"#card-{d_id}").get_by_role("button", name="Approve", exact=True).click()
    expect(flo.locator(f"#card-{d_id}")).to_contain_text("Approved.")
    shown = status(site.agent, d_id)
    assert shown["status"] == "approved"
    assert shown["decision"]["decided_by"] == ["fred", "fay", "flo"]
    assert shown["route"]["approvals"] == ["fred", "fay", "flo"]
    assert CONSOLE_ERRORS == []


def test_a_reviewer_snoozes_one_item_and_hands_another_to_a_colleague(site):
    later = site.agent.defer(refund_of(300, "Refund $300 (later)")).get_json()["id"]
    handed = site.agent.defer(refund_of(200, "Refund $200 (for fay)")).get_json()["id"]
    fred = login(site, "fred")
    start_batch(fred)
    card = fred.locator(f"#card-{later}")
    card.get_by_text("Snooze or hand over").click()
    snooze = settled(card.get_by_role("form", name="Snooze"))
    snooze.get_by_label("Not before").select_option("60")
    snooze.get_by_label("Why").fill("waiting for the customer's reply")
    shots(fred, "route-snooze-form")
    snooze.get_by_role("button", name="Snooze").click()
    expect(fred.locator(f"#card-{later}")).to_contain_text("Snoozed until")
    card = fred.locator(f"#card-{handed}")
    card.get_by_text("Snooze or hand over").click()
    over = settled(card.get_by_role("form", name="Hand over"))
    over.get_by_label("Hand to").select_option("user:fay")
    over.get_by_label("Note").fill("you spoke to this customer")
    over.get_by_role("button", name="Hand over").click()
    expect(fred.locator(f"#card-{handed}")).to_contain_text("Handed to fay")
    fred.goto(site.url + "/queue")
    expect(fred.locator("tr", has_text="Refund $300 (later)")).to_contain_text("snoozed until")
    expect(fred.locator("tr", has_text="Refund $200 (for fay)")).to_contain_text("for fay")
    shots(fred, "route-queue-snoozed-and-handed")
    # flo may take neither: one is snoozed, the other is fay's.
    flo = login(site, "flo")
    start_batch(flo)
    expect(flo.get_by_text("Nothing to review right now")).to_be_visible()
    fay = login(site, "fay")
    expect(fay.locator("tbody tr").first).to_contain_text("Refund $200 (for fay)")
    start_batch(fay)
    card = fay.locator(f"#card-{handed}")
    expect(card).to_contain_text("handed to fay by fred: you spoke to this customer")
    shots(fay, "route-handed-card")
    card.get_by_role("button", name="Approve", exact=True).click()
    expect(fay.locator(f"#card-{handed}")).to_contain_text("Approved.")
    assert status(site.agent, later)["status"] == "pending"
    assert CONSOLE_ERRORS == []
