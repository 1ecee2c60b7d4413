"""Every page, walked in Chromium as a new reviewer and as an admin would, on the demo's
data (review/demo.py, as `make run` seeds it), at 1280x720 and 1440x900: each has one
`<h1>`, axe-core (tests/accessibility.py) finds nothing serious or critical on it, and
its screenshot goes to test-artifacts/every-page-*.png. The 500 page too: the test's app
has a route that raises (FAILING), and propagates no exceptions, as in production.

The pages with flows of their own are walked there too (the batch, the queue and the
card in tests/test_reviewer_card.py; /canaries and /reviewers while seeding and deciding
in tests/test_canaries_browser.py); here each page is opened as it first appears.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from review.demo import DEMO_AGENT, ensure_demo
from tests.accessibility import grave_violations
from tests.browser_support import (
    launch_options,
    live_server,
    logged_in_page,
    start_batch,
    window_shot,
)

pytestmark = pytest.mark.browser
SIZES = ((1280, 720), (1440, 900))
FAILING = "/test-only/fails"  # registered by demo_site only: an unhandled exception, a 500

# What a reviewer opens, in the order a newcomer finds it (the batch is started between).
REVIEWER_PAGES = {
    "home": "/",
    "queue": "/queue",
    "item": "/deferrals/{item}",
    "settings": "/settings",
    "agents": "/agents",
    "agent": f"/agents/{DEMO_AGENT}",
    "forbidden": "/canaries",  # an admin's page: 403
    "not-found": "/no-such-page",
    "server-error": FAILING,
}
ADMIN_PAGES = {
    "canaries": "/canaries",
    "reviewers": "/reviewers",
    "notifications": "/admin/notifications",
    "users": "/users",
    "user": "/users/rita",
    "policy": "/policy",
    "new-agent": "/agents/new",
    "deliveries": f"/agents/{DEMO_AGENT}/deliveries",
    "audit": "/audit",
    "evidence": "/audit/deferrals/{item}",
    "not-allowed": "/batch/start",  # a GET where only POST is served: 405
}


class Site(NamedTuple):
    url: str
    chromium: Browser
    item: str  # a pending demo deferral


@pytest.fixture
def demo_site(make_app, people) -> Iterator[Site]:
    app = make_app(agent_rate=0)
    app.config["PROPAGATE_EXCEPTIONS"] = False  # TESTING turned it on; production has it off
    app.add_url_rule(FAILING, "test_only_fails", fails)
    svc = app.extensions["countersign"]
    ensure_demo(svc)
    with app.app_context():
        from approval_queue.demo_agent import seed

        assert seed() == 6
    from review.models import Deferral

    with svc.db.read() as session:
        item = session.query(Deferral.id).order_by(Deferral.rank.desc()).first()[0]
    with live_server(app) as url, sync_playwright() as pw:
        chromium = pw.chromium.launch(**launch_options())
        yield Site(url, chromium, item)
        chromium.close()


def fails():
    raise RuntimeError("a failure the test asked for: the 500 page is what people see")


def walk(site: Site, page: Page, pages: dict[str, str], who: str) -> dict[str, list[str]]:
    """Open each page; what is wrong with each (no or several h1, axe's findings)."""
    wrong: dict[str, list[str]] = {}
    for name, path in pages.items():
        response = page.goto(site.url + path.format(item=site.item))
        found = grave_violations(page)
        if path == FAILING and (response.status != 500 or not page.locator("main h1").count()):
            found.append(f"not the site's 500 page: {response.status}")
        if page.locator("h1").count() != 1:
            found.append(f"{page.locator('h1').count()} h1 elements")
        if found:
            wrong[path] = found
        window_shot(page, "every-page", f"{who}-{name}")
    return wrong


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_every_page_has_one_h1_and_passes_axe(demo_site, size):
    rita = logged_in_page(demo_site.chromium, demo_site.url, "rita", size)
    wrong = walk(demo_site, rita, REVIEWER_PAGES, "reviewer")
    rita.goto(demo_site.url + "/queue")
    claims = rita.get_by_role("button", name="Claim")
    expect(claims.first).to_be_visible()
    for n in range(claims.count()):  # one line each: "Claim" once wrapped to "Clai / m"
        assert claims.nth(n).bounding_box()["height"] < 32, "a Claim button wraps"
    rita.goto(demo_site.url + "/queue")
    start_batch(rita)
    expect(rita.locator("article.card[data-live]").first).to_be_visible()
    held = rita.locator("article.card[data-live]").first.get_attribute("data-id")
    wrong.update(walk(demo_site, rita, {"batch": "/batch"}, "reviewer"))
    rita.goto(f"{demo_site.url}/deferrals/{held}")  # an item she holds: its decision bar
    expect(rita.get_by_role("button", name="Approve", exact=True)).to_be_visible()
    wrong.update(walk(demo_site, rita, {"held-item": f"/deferrals/{held}"}, "reviewer"))
    rita.context.close()
    ada = logged_in_page(demo_site.chromium, demo_site.url, "ada", size)
    wrong.update(walk(demo_site, ada, ADMIN_PAGES, "admin"))
    ada.context.close()
    page = demo_site.chromium.new_page(viewport={"width": size[0], "height": size[1]})
    wrong.update(walk(demo_site, page, {"login": "/login", "server-error": FAILING}, "anyone"))
    page.close()
    assert wrong == {}
