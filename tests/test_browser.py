"""The reviewer pages in a real browser: Chromium, driven by Playwright, over real HTTP.

Accessible names are part of the contract (PROTOCOL.md section 8), so the tests find
everything by label and role, as a screen reader would.
"""

from collections.abc import Iterator
from datetime import timedelta
from typing import NamedTuple

import pytest
from playwright.sync_api import Browser, expect
from sqlalchemy import select, update

from review.models import AuditEvent, Deferral, utcnow
from tests.browser_support import (
    ARTIFACTS,
    live_server,
    logged_in_page,
    own_windows,
    start_batch,
)
from tests.helpers import AgentClient, refund

pytestmark = pytest.mark.browser
CONSOLE_ERRORS: list[str] = []  # console errors of every page of the current test


class Site(NamedTuple):
    """The app served over HTTP, its agent billing-bot, and a Chromium to open pages in."""

    url: str
    agent: AgentClient
    chromium: Browser


@pytest.fixture
def site(chromium, make_app, make_agent, people) -> Iterator[Site]:
    app = make_app(agent_rate=0)
    agent = make_agent().on(app)
    CONSOLE_ERRORS.clear()
    with live_server(app) as url, own_windows(chromium):
        yield Site(url, agent, chromium)


def login(site, name):
    return logged_in_page(site.chromium, site.url, name, (1280, 900), console_errors=CONSOLE_ERRORS)


def status(agent, d_id):
    return agent.get(f"/api/v1/deferrals/{d_id}").get_json()


def test_a_reviewer_clears_a_batch_by_mouse_and_by_keyboard(site):
    ids = [
        site.agent.defer(refund(summary=f"Refund {n} to customer")).get_json()["id"]
        for n in (100, 200, 300)
    ]
    site.agent.defer(
        refund(
            summary="Delete 250 CRM contacts",
            action={"tool": "crm.delete_contacts", "args": {"ids": list(range(250))}},
            labels={"env": "prod"},
            risk={"score": 70},
        )
    )
    page = login(site, "rita")
    expect(page.get_by_role("button", name="Start batch", exact=True)).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "queue.png"), full_page=True)
    start_batch(page)
    expect(page).to_have_url(site.url + "/batch")
    cards = page.locator("article.card")
    expect(cards).to_have_count(4)
    page.screenshot(path=str(ARTIFACTS / "batch.png"), full_page=True)
    first = cards.nth(0)
    expect(first.get_by_role("link", name="Trace")).to_have_attribute("rel", "noopener noreferrer")
    first.get_by_role("button", name="Approve", exact=True).click()
    expect(page.locator("article.card").nth(0)).to_contain_text("Approved.")
    page.keyboard.press("a")  # the next card is current now
    expect(page.locator("article.card").nth(1)).to_contain_text("Approved.")
    page.keyboard.press("r")
    expect(page.locator("article.card").nth(2).get_by_label("Reason")).to_be_focused()
    page.keyboard.type("amount looks wrong")
    page.keyboard.press("Enter")
    expect(page.locator("article.card").nth(2)).to_contain_text("Rejected.")
    page.keyboard.press("?")
    expect(page.get_by_role("dialog")).to_be_visible()
    assert CONSOLE_ERRORS == []  # no CSP violation, no missing resource
    outcomes = {status(site.agent, i)["status"] for i in ids}
    assert "approved" in outcomes or "rejected" in outcomes
    decided = [status(site.agent, i) for i in ids]
    assert sum(d["status"] in ("approved", "rejected") for d in decided) >= 2


def test_start_batch_is_one_request_with_js_and_a_reload_reads_the_batch_with_or_without(site, svc):
    for n in (100, 200):
        site.agent.defer(refund(summary=f"Refund {n} to customer"))
    page = login(site, "rita")
    starts = []
    page.on("request", lambda r: r.url.endswith("/batch/start") and starts.append(r))
    with page.expect_response(lambda r: r.url.endswith("/batch/start")) as started:
        start_batch(page)
    assert started.value.status == 200  # the page itself: no redirect, no second request
    expect(page).to_have_url(site.url + "/batch")
    expect(page.locator("article.card")).to_have_count(2)
    page.get_by_role("button", name="Release batch").click()
    expect(page).to_have_url(site.url + "/queue")

    plain = site.chromium.new_context(java_script_enabled=False).new_page()
    plain.goto(site.url + "/login")
    plain.get_by_label("Username").fill("sam")
    plain.get_by_label("Password").fill("correct horse battery")
    plain.get_by_role("button", name="Log in").click()
    start_batch(plain)
    expect(plain).to_have_url(site.url + "/batch")  # 303 to GET /batch
    expect(plain.locator("article.card")).to_have_count(2)
    plain.reload()
    expect(plain.locator("article.card")).to_have_count(2)
    assert len(starts) == 1  # rita's one; sam's page is another context
    with svc.db.read() as session:
        events = session.scalars(
            select(AuditEvent.actor_id).where(AuditEvent.event_type == "deferral.claimed")
        ).all()
    assert events.count("sam") == 2  # one claim each, none from the reload


def test_two_reviewers_share_a_two_person_item(site):
    payout = refund(summary="Pay out EUR 12,500", risk={"score": 95})
    d_id = site.agent.defer(payout).get_json()["id"]
    rita = login(site, "rita")
    start_batch(rita)
    rita.get_by_role("button", name="Approve", exact=True).click()
    expect(rita.locator("article.card")).to_contain_text("1 of 2 approvals")
    sam = login(site, "sam")
    expect(sam.get_by_text("1 of 2 approvals")).to_be_visible()
    start_batch(sam)
    sam.get_by_role("button", name="Approve", exact=True).click()
    expect(sam.locator("article.card")).to_contain_text("Approved.")
    assert status(site.agent, d_id)["decision"]["decided_by"] == ["rita", "sam"]


def test_a_stale_lease_is_explained_in_the_page(site, svc):
    d_id = site.agent.defer().get_json()["id"]
    page = login(site, "rita")
    start_batch(page)
    with svc.db.write() as session:
        session.execute(update(Deferral).values(lease_expires_at=utcnow() - timedelta(seconds=5)))
    page.get_by_role("button", name="Approve", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("your claim on this item lapsed")
    assert status(site.agent, d_id)["status"] == "in_review"


def test_a_hostile_payload_renders_inert(site):
    hostile = (
        '<script>alert("x")</script><img src=x onerror=alert(1)><style>*{display:none}</style>'
    )
    site.agent.defer(
        refund(
            summary=hostile,
            rationale=hostile * 50,
            action={"tool": "x.y", "args": {"html": hostile, "long": "z" * 50000}},
            trace={"url": 'https://traces.example.com/t/1"><script>alert(3)</script>'},
            before={"bio": hostile},
            after={"bio": hostile + "!"},
        )
    )
    bad = site.agent.defer(refund(trace={"url": "javascript:alert(1)"}))
    assert bad.status_code == 422
    page = login(site, "rita")
    start_batch(page)
    card = page.locator("article.card")
    expect(card).to_be_visible()
    expect(card.get_by_role("heading", level=2)).to_contain_text('<script>alert("x")</script>')
    assert (
        page.evaluate("document.querySelectorAll('main script, main img, main style').length") == 0
    )
    link = card.get_by_role("link", name="Trace")
    assert link.get_attribute("href").startswith("https://traces.example.com/")
    assert page.evaluate("getComputedStyle(document.body).display") != "none"
    assert not [e for e in CONSOLE_ERRORS if "Content Security Policy" in e], CONSOLE_ERRORS


def test_an_owner_flips_the_kill_switch_in_the_browser(site):
    d_id = site.agent.defer().get_json()["id"]
    page = login(site, "olivia")  # billing-bot's owner
    page.get_by_role("link", name="Agents").click()
    page.get_by_role("link", name="billing-bot").click()
    page.get_by_role("button", name="Kill switch").click()
    reason = page.get_by_label("Reason")
    expect(reason).to_be_focused()
    page.get_by_role("button", name="Stop billing-bot").click()
    expect(page.get_by_label("Reason")).to_be_visible()  # a reason is required: still here
    assert site.agent.defer(refund(summary="still open")).status_code == 202
    reason.fill("refund loop at 03:00")
    page.get_by_role("button", name="Stop billing-bot").click()
    switch = page.locator("#switch")
    expect(switch).to_contain_text("refund loop at 03:00")
    expect(switch.get_by_role("button", name="Revive")).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "agent-killed.png"), full_page=True)
    assert site.agent.defer().status_code == 423
    assert status(site.agent, d_id)["status"] == "killed"
    switch.get_by_role("button", name="Revive").click()
    page.get_by_label("Reason").fill("fixed the loop")
    page.get_by_role("button", name="Revive billing-bot").click()
    expect(page.locator("#switch").get_by_role("button", name="Kill switch")).to_be_visible()
    assert site.agent.defer(refund(summary="after revive")).status_code == 202
    assert CONSOLE_ERRORS == []


def test_a_reviewer_who_owns_nothing_sees_no_kill_switch(site):
    page = login(site, "rita")
    page.goto(site.url + "/agents/billing-bot")
    expect(page.get_by_role("heading", name="Kill switch")).to_be_visible()
    expect(page.get_by_role("button", name="Kill switch")).to_have_count(0)


def test_an_owners_page_shows_a_breaker_trip_without_a_reload_by_hand(site, svc):
    from review.agents.killswitch import Actor, kill

    page = login(site, "olivia")
    page.goto(site.url + "/agents/billing-bot")
    expect(page.locator("#switch")).to_contain_text("active")
    kill(svc, "billing-bot", Actor("system", "breaker"), "breaker: flood, 201 deferrals in 60 s")
    expect(page.locator("#switch")).to_contain_text("system:breaker", timeout=15000)
    expect(page.get_by_role("button", name="Revive")).to_be_visible()
