"""Canaries and the reviewers' figures in a real browser (Chromium over HTTP, axe-core).

A reviewer approves a canary in their batch and is told at once, with the undo window
on (a canary is never held); an admin seeds canaries from their page and reads each
reviewer's figures. Screenshots at 1280x720 and 1440x900 in test-artifacts/.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from review.canaries.seeding import seed_canaries
from tests.accessibility import grave_violations
from tests.browser_support import (
    ARTIFACTS,
    PASSWORD,
    live_server,
    logged_in_page,
    own_windows,
    start_batch,
    to_a_new_page,
)
from tests.helpers import refund

pytestmark = pytest.mark.browser
SIZES = ((1280, 720), (1440, 900))


@pytest.fixture
def site(chromium, make_app, make_agent, people) -> Iterator[tuple[str, Browser, object]]:
    app = make_app(undo_seconds=5)  # the real default: decisions wait out a window
    svc = app.extensions["countersign"]
    from review.users import create_user

    agent = make_agent().on(app)
    with svc.db.write() as session:
        create_user(session, "tess", "reviewer", PASSWORD)
    agent.defer(refund())
    with live_server(app) as url, own_windows(chromium):
        yield url, chromium, svc


def login(url: str, chromium: Browser, name: str, size=(1280, 720)) -> Page:
    return logged_in_page(chromium, url, name, size)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_approving_a_canary_tells_the_reviewer_at_once(site, size):
    url, chromium, svc = site
    (canary,) = seed_canaries(svc, ("user", "ada"), agent_slug="billing-bot", kind="delete-backups")
    rita = login(url, chromium, "rita", size)
    start_batch(rita)
    card = rita.locator(f"#card-{canary.deferral_id}")
    expect(card).to_contain_text(canary.summary)
    expect(card).to_contain_text("billing-bot")
    # At once: the decision's own answer tells (a real one would wait out 5 s for Undo).
    # Asked of that answer, not of the clock: a loaded machine takes seconds to give it.
    with rita.expect_response(lambda r: r.request.method == "POST") as answer:
        card.get_by_role("button", name="Approve").click()
    told = "This was a canary: a test item that should have been rejected."
    assert told in answer.value.text()
    expect(card.get_by_role("alert")).to_contain_text(told)
    expect(card.get_by_role("button", name="Undo")).to_have_count(0)
    expect(rita.locator("#decision-status")).to_contain_text("This was a canary")
    card.scroll_into_view_if_needed()
    ARTIFACTS.mkdir(exist_ok=True)
    rita.screenshot(path=str(ARTIFACTS / f"canary-missed-{size[0]}x{size[1]}.png"))
    assert grave_violations(rita) == []


def test_rejecting_a_canary_says_it_was_caught(site):
    url, chromium, svc = site
    (canary,) = seed_canaries(svc, ("user", "ada"), agent_slug="billing-bot")
    sam = login(url, chromium, "sam")
    start_batch(sam)
    card = sam.locator(f"#card-{canary.deferral_id}")
    card.get_by_label("Reason").fill("Against policy")
    card.get_by_role("button", name="Reject").click()
    expect(card).to_contain_text("This was a canary: a test item, and you rejected it.")


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_an_admin_seeds_canaries_and_reads_each_reviewers_figures(site, size):
    url, chromium, svc = site
    # rita misses one, sam catches one, through the pages.
    for name, verdict in (("rita", "Approve"), ("sam", "Reject")):
        (canary,) = seed_canaries(svc, ("user", "ada"), agent_slug="billing-bot")
        page = login(url, chromium, name)
        page.goto(url + f"/deferrals/{canary.deferral_id}")
        to_a_new_page(page, page.get_by_role("button", name="Claim"))
        if verdict == "Reject":
            page.get_by_label("Reason").fill("No")
        page.get_by_role("button", name=verdict).click()
        expect(page.get_by_text("This was a canary").first).to_be_visible()
        page.context.close()

    ada = login(url, chromium, "ada", size)
    nav = ada.get_by_role("navigation", name="Main")
    nav.get_by_role("link", name="Canaries").click()
    expect(ada).to_have_url(url + "/canaries")
    ada.get_by_label("Agent").select_option("billing-bot")
    ada.get_by_label("Kind").select_option("grant-admin-external")
    ada.get_by_label("Count").fill("2")
    ada.get_by_role("button", name="Seed canaries").click()
    expect(ada.get_by_role("status")).to_have_text("Seeded 2 canaries: in the queue now.")
    rows = ada.get_by_role("table", name="Canaries").get_by_role("row")
    expect(rows).to_have_count(5)  # the header, two open, one missed, one caught
    assert grave_violations(ada) == []
    ada.screenshot(path=str(ARTIFACTS / f"canaries-{size[0]}x{size[1]}.png"), full_page=True)

    nav.get_by_role("link", name="Reviewers").click()
    expect(ada).to_have_url(url + "/reviewers")
    week = ada.get_by_role("table", name="Last 7 days")
    expect(week.get_by_role("row", name="rita")).to_contain_text("0 of 1 (0%)")
    expect(week.get_by_role("row", name="sam")).to_contain_text("1 of 1 (100%)")
    assert grave_violations(ada) == []
    ada.screenshot(path=str(ARTIFACTS / f"reviewers-{size[0]}x{size[1]}.png"), full_page=True)
