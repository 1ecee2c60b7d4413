"""Undo in Chromium (PROTOCOL.md section 16): after a decision the card says "Approved —
Undo (N)" and counts down; `u` takes it back and the card returns with its controls;
left alone, it takes effect when the countdown ends. Screenshots at 1280x720 and
1440x900 in test-artifacts/undo-*.png.

Nothing here races the window: a test that acts inside it has a window far longer than
what it does takes (axe, a screenshot, on a loaded machine), and reads the countdown
against the window the server gave; only the test of a window running out has a short
one."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import NamedTuple

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from review.models import utcnow
from review.reviewing.taking_effect import take_effect_due
from tests.accessibility import grave_violations
from tests.browser_support import (
    launch_options,
    live_server,
    logged_in_page,
    start_batch,
    window_shot,
)
from tests.helpers import AgentClient

pytestmark = pytest.mark.browser
SIZES = ((1280, 720), (1440, 900))
WINDOW = 3  # seconds: a window the test waits out
LONG_WINDOW = 30  # seconds: a window the test acts inside, whatever the machine's load


class Site(NamedTuple):
    url: str
    svc: object
    agent: AgentClient
    chromium: Browser
    errors: list[str]


@pytest.fixture
def window() -> int:
    """The undo window's seconds (a test parametrizes `window` for another)."""
    return WINDOW


@pytest.fixture
def site(make_app, make_agent, people, window) -> Iterator[Site]:
    app = make_app(agent_rate=0, undo_seconds=window, min_read_seconds=0)
    agent = make_agent().on(app)
    errors: list[str] = []
    with live_server(app) as url, sync_playwright() as pw:
        chromium = pw.chromium.launch(**launch_options())
        yield Site(url, app.extensions["countersign"], agent, chromium, errors)
        chromium.close()


def login(site: Site, name: str, size=(1280, 720)) -> Page:
    return logged_in_page(
        site.chromium, site.url, name, size, console_errors=site.errors, dialogs_fail=False
    )


def shot(page: Page, name: str) -> None:
    window_shot(page, "undo", name)


def status(site: Site, d_id: str) -> str:
    return site.agent.get(f"/api/v1/deferrals/{d_id}").get_json()["status"]


@pytest.mark.parametrize("window", [LONG_WINDOW])
@pytest.mark.parametrize("size", SIZES)
def test_u_takes_an_approval_back_and_the_card_returns_with_its_controls(site, size, window):
    first = site.agent.defer().get_json()["id"]
    site.agent.defer()
    page = login(site, "rita", size)
    start_batch(page)
    card = page.locator(f"#card-{first}")
    expect(card).to_be_focused()
    page.keyboard.press("a")
    expect(card.locator(".undo-bar")).to_contain_text("Approved —")
    expect(card.get_by_role("button", name="Undo", exact=True)).to_be_visible()
    # The count starts from what is left of the server's window when the card came,
    # and counts down from there (the seconds since are the machine's, not the test's).
    ms_left = int(card.locator(".undo-bar").get_attribute("data-undo-ms"))
    assert 0 < ms_left <= window * 1000
    count = int(re.fullmatch(r"\((\d+)\)", card.locator(".countdown").inner_text()).group(1))
    assert 1 <= count <= -(-ms_left // 1000)
    expect(page.locator("#batch-left")).to_have_text("1")
    assert grave_violations(page) == []  # the held card, answered light (_held_card.html)
    shot(page, "held")
    assert status(site, first) == "in_review"  # nothing has left the server
    page.keyboard.press("u")
    expect(card.get_by_role("button", name="Approve", exact=True)).to_be_visible()
    expect(card).to_have_attribute("data-live", "")
    expect(card).to_be_focused()
    expect(page.locator("#decision-status")).to_contain_text("Undone")
    expect(page.locator("#batch-left")).to_have_text("2")
    shot(page, "undone")
    # Nothing is left to take effect when the window would have closed, nor on a read.
    assert take_effect_due(site.svc, utcnow() + timedelta(seconds=window + 1)) == 0
    assert status(site, first) == "in_review"
    assert site.errors == []


def test_left_alone_the_decision_takes_effect_when_the_countdown_ends(site):
    d_id = site.agent.defer().get_json()["id"]
    page = login(site, "rita")
    start_batch(page)
    page.locator(f"#card-{d_id}").get_by_label("Reason").fill("wrong invoice")
    page.locator(f"#card-{d_id}").get_by_role("button", name="Reject", exact=True).click()
    card = page.locator(f"#card-{d_id}")
    expect(card.locator(".undo-bar")).to_contain_text("Rejected —")
    expect(page.get_by_role("region", name="Batch done")).to_be_visible()
    # The card asks for itself when the countdown ends: no reload, no worker needed. The
    # timeout is a ceiling for a loaded machine's request, not a wait: it passes at once.
    expect(card.locator(".undo-bar")).to_have_count(0, timeout=(WINDOW + 30) * 1000)
    expect(card).to_have_attribute("data-outcome", "rejected")
    expect(card).not_to_have_attribute("data-held", "")
    expect(page.locator("#decision-status")).to_contain_text("Rejected by rita: wrong invoice.")
    assert status(site, d_id) == "rejected"
    shot(page, "took-effect")
    assert site.errors == []
