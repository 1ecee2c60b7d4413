"""The card designed for a decision, the flow end to end, and accessibility, in Chromium
(issue 15; PROTOCOL.md sections 8 and 16).

The demo's data (review/demo.py, as `make run` seeds it) gives the batch of five that
the README's figures are about. Screenshots at 1280x720 and 1440x900 go to
test-artifacts/reviewer-*.png. axe-core (tests/accessibility.py) runs on every page a
reviewer opens, in both sizes; serious or critical violations fail the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import pytest
from playwright.sync_api import Browser, Page, expect

from review.demo import ensure_demo
from tests.accessibility import grave_violations
from tests.browser_support import (
    live_server,
    logged_in_page,
    own_windows,
    start_batch,
    window_shot,
)
from tests.helpers import AgentClient, refund

pytestmark = pytest.mark.browser
SIZES = ((1280, 720), (1440, 900))


class Site(NamedTuple):
    url: str
    agent: AgentClient
    chromium: Browser
    errors: list[str]  # console errors of every page


@pytest.fixture
def site(chromium, make_app, make_agent, people) -> Iterator[Site]:
    app = make_app(agent_rate=0)
    agent = make_agent().on(app)
    errors: list[str] = []
    with live_server(app) as url, own_windows(chromium):
        yield Site(url, agent, chromium, errors)


@pytest.fixture
def demo_site(chromium, make_app, people) -> Iterator[Site]:
    """The app with the demo agent's first six samples, as `make run` seeds them."""
    app = make_app(agent_rate=0)
    svc = app.extensions["countersign"]
    ensure_demo(svc)  # people exist already: ada (an admin) owns the demo agent
    with app.app_context():
        from approval_queue.demo_agent import seed

        assert seed() == 6
    errors: list[str] = []
    with live_server(app) as url, own_windows(chromium):
        yield Site(url, None, chromium, errors)


def login(site: Site, name: str, size=(1280, 720)) -> Page:
    return logged_in_page(site.chromium, site.url, name, size, console_errors=site.errors)


def shot(page: Page, name: str) -> None:
    window_shot(page, "reviewer", name)


def inside_viewport(page: Page, locator) -> bool:
    box = locator.bounding_box()
    return (
        box is not None
        and box["y"] >= 0
        and box["y"] + box["height"] <= page.viewport_size["height"]
    )


def status(agent: AgentClient, d_id: str) -> str:
    return agent.get(f"/api/v1/deferrals/{d_id}").get_json()["status"]


def test_every_demo_card_has_its_risk_and_controls_on_screen(demo_site):
    for size in SIZES:
        page = login(demo_site, "ada", size)
        start_batch(page)
        cards = page.locator("article.card")
        expect(cards).to_have_count(5)
        for n in range(5):
            if n:
                page.keyboard.press("j")
            card = cards.nth(n)
            expect(card).to_be_focused()
            for part in (
                card.locator(".level").first,
                card.get_by_role("button", name="Approve", exact=True),
                card.get_by_role("button", name="Reject", exact=True),
                card.get_by_label("Reason"),
            ):
                assert inside_viewport(page, part), (size, n, part)
            shot(page, f"demo-card{n + 1}")
        # The rest a keystroke away: e opens More, and the bar stays on screen.
        page.keyboard.press("e")
        current = cards.nth(4)
        expect(current.locator("details.more")).to_have_attribute("open", "")
        expect(current.get_by_role("heading", name="The agent's rationale")).to_be_visible()
        assert inside_viewport(page, current.get_by_role("button", name="Approve", exact=True))
        shot(page, "demo-more")
        assert grave_violations(page) == []
        page.get_by_role("button", name="Release batch").click()
        page.context.close()
    assert demo_site.errors == []


def test_the_demo_batch_clears_with_seven_keys_and_the_next_one_with_n(demo_site):
    page = login(demo_site, "ada")
    start_batch(page)
    expect(page.locator("article.card")).to_have_count(5)
    expect(page.locator("#batch-left")).to_have_text("5")
    live = page.locator("article.card[data-live]")
    for key in ["a", "a", "r", "1", "a", "r", "2"]:  # two rejections, each with a quick pick
        before = live.count()
        page.keyboard.press(key)
        if key != "r":  # a decision: as a person would, see it land before the next key
            expect(live).to_have_count(before - 1)
    end = page.get_by_role("region", name="Batch done")
    expect(end).to_be_visible()
    expect(page.locator("#batch-left")).to_have_text("0")
    items = end.get_by_role("listitem")
    expect(items).to_have_count(5)
    expect(end).to_contain_text("First of two approvals: Grant admin on 'warehouse'")
    expect(end).to_contain_text("Rejected: Delete 250 duplicate CRM contacts")
    next_batch = page.get_by_role("button", name="Next batch")
    expect(next_batch).to_be_focused()
    expect(page.locator("#decision-status")).to_contain_text("Rejected.")
    reasons = page.locator("article.card .status").all_text_contents()  # folded: hidden
    assert any("Needs more context" in r for r in reasons)
    assert any("Amount or scope too large" in r for r in reasons)
    shot(page, "demo-cleared")
    assert grave_violations(page) == []  # decided cards keep their contrast
    page.keyboard.press("n")
    expect(page).to_have_url(demo_site.url + "/batch")
    expect(page.locator("article.card")).to_have_count(1)  # the sixth sample
    expect(page.locator("article.card").first).to_be_focused()
    assert demo_site.errors == []


def test_reject_without_a_reason_keeps_the_card_and_puts_focus_on_the_reason(site):
    d_id = site.agent.defer().get_json()["id"]
    page = login(site, "rita")
    start_batch(page)
    card = page.locator(f"#card-{d_id}")
    card.get_by_role("button", name="Reject", exact=True).click()
    expect(card.get_by_role("alert")).to_contain_text("Say why you reject it")
    expect(card.get_by_label("Reason")).to_be_focused()
    expect(card.get_by_role("button", name="Approve", exact=True)).to_be_visible()
    shot(page, "reject-needs-reason")
    page.keyboard.type("wrong invoice")
    page.keyboard.press("Enter")
    expect(card.locator(".status-line")).to_contain_text("Rejected.")
    expect(page.locator("#decision-status")).to_contain_text("Rejected.")
    assert status(site.agent, d_id) == "rejected"
    assert site.errors == []


def test_approving_selected_refuses_what_was_not_read(site):
    ids = [site.agent.defer(refund(summary=f"Refund {n} to C-1")).get_json()["id"] for n in (1, 2)]
    page = login(site, "rita")
    start_batch(page)
    for box in page.get_by_role("checkbox", name="Select").all():
        box.check()  # ticked at once: neither card was in view for 3 s
    page.get_by_role("button", name="Approve selected").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("not read yet")
    expect(alert).to_contain_text("“Refund 1 to C-1”")
    expect(alert).not_to_contain_text(ids[0])
    shot(page, "bulk-unread")
    assert {status(site.agent, d) for d in ids} == {"in_review"}
    page.wait_for_timeout(3500)  # both small cards are in view together now
    for box in page.get_by_role("checkbox", name="Select").all():
        box.check()
    page.get_by_role("button", name="Approve selected").click()
    expect(page.get_by_role("status").filter(has_text="Approved 2 items.")).to_be_visible()
    assert {status(site.agent, d) for d in ids} == {"approved"}


def test_a_row_is_claimed_and_decided_on_its_page_and_history_shows(site):
    first = site.agent.defer(refund(summary="Refund $740, first ask")).get_json()["id"]
    page = login(site, "rita")
    start_batch(page)
    page.get_by_label("Reason", exact=True).fill("customer already refunded")
    page.get_by_role("button", name="Reject", exact=True).click()
    expect(page.get_by_role("button", name="Next batch")).to_be_focused()
    again = site.agent.defer(refund(summary="Refund $740, asked again")).get_json()["id"]
    sam = login(site, "sam", (1440, 900))
    sam.get_by_role("row", name="asked again").get_by_role("button", name="Claim").click()
    expect(sam).to_have_url(site.url + f"/deferrals/{again}")
    expect(sam.get_by_role("heading", level=1)).to_have_text("Refund $740, asked again")
    history = sam.locator(".history")
    expect(history).to_contain_text("rejected")
    expect(history).to_contain_text("customer already refunded")
    expect(history.get_by_role("link", name="Refund $740, first ask")).to_be_visible()
    shot(sam, "item-page-held")
    assert grave_violations(sam) == []
    sam.wait_for_timeout(3100)
    sam.get_by_role("button", name="Approve", exact=True).click()
    expect(sam.locator("#decision-status")).to_contain_text("Approved.")
    expect(sam.locator("#decision-status")).not_to_contain_text("flagged")
    assert status(site.agent, again) == "approved" and status(site.agent, first) == "rejected"
    assert site.errors == []


def test_shortcuts_can_be_turned_off(site):
    d_id = site.agent.defer().get_json()["id"]
    page = login(site, "rita")
    page.get_by_role("link", name="Settings").click()
    box = page.get_by_label("Keyboard shortcuts")
    expect(box).to_be_checked()
    assert grave_violations(page) == []
    box.uncheck()
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Keyboard shortcuts are off")
    page.get_by_role("link", name="Queue").click()
    start_batch(page)
    page.locator(f"#card-{d_id}").focus()
    page.keyboard.press("a")
    page.wait_for_timeout(500)
    assert status(site.agent, d_id) == "in_review"
    expect(page.locator("kbd", has_text="a")).to_have_count(0)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_every_reviewer_page_passes_axe(site, size):
    d_id = site.agent.defer(
        refund(summary="Delete /srv/data/customer-exports-2026/archive/very/long/path")
    ).get_json()["id"]
    ada = login(site, "ada", size)  # an admin sees every page
    pages = {
        "queue": "/queue",
        "item": f"/deferrals/{d_id}",
        "settings": "/settings",
        "agents": "/agents",
        "agent": "/agents/billing-bot",
        "audit": "/audit",
        "not-found": "/no-such-page",
        "not-allowed": "/batch/start",
    }
    for name, path in pages.items():
        ada.goto(site.url + path)
        assert ada.locator("h1").count() == 1, path
        assert grave_violations(ada) == [], path
        shot(ada, f"axe-{name}")
    ada.goto(site.url + "/queue")
    start_batch(ada)
    assert ada.locator("h1").count() == 1
    assert grave_violations(ada) == [], "/batch"
    shot(ada, "axe-batch")
    ada.context.close()
    auditor = login(site, "audrey", size)
    auditor.goto(site.url + "/batch")
    expect(auditor.get_by_role("heading", level=1)).to_contain_text("403")
    assert grave_violations(auditor) == []
    shot(auditor, "axe-forbidden")
    auditor.context.close()
    page = site.chromium.new_page(viewport={"width": size[0], "height": size[1]})
    page.goto(site.url + "/login")
    assert grave_violations(page) == []
