"""Verified vs claimed principals at a glance, in Chromium (PROTOCOL.md section 17)."""

from collections.abc import Iterator

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.browser_support import ARTIFACTS, launch_options, live_server, start_batch
from tests.helpers import refund
from tests.principal_issuer import AUDIENCE, Issuer

pytestmark = pytest.mark.browser
PASSWORD = "correct horse battery"  # the people fixture's


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    made = Issuer()
    yield made
    made.close()


def test_a_card_shows_a_verified_principal_with_groups_and_a_claimed_one(
    make_app, make_agent, people, issuer
):
    app = make_app(agent_rate=0, principal_issuers=issuer.url, principal_audience=AUDIENCE)
    agent = make_agent().on(app)
    verified = refund(
        summary="Refund $740 to customer C-88319",
        intent="I was charged twice for INV-1, please refund the second charge",
    )
    verified["on_behalf_of"]["token"] = issuer.token(
        email="alice@example.com", groups=["finance", "support"]
    )
    assert agent.defer(verified).status_code == 202
    assert agent.defer(refund(summary="Refund $90 to customer C-2")).status_code == 202
    with live_server(app) as url, sync_playwright() as pw:
        chromium = pw.chromium.launch(**launch_options())
        page = chromium.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.goto(url + "/login")
        page.get_by_label("Username").fill("rita")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        start_batch(page)
        cards = page.locator("article.card")
        expect(cards).to_have_count(2)
        card = page.locator("article.card", has_text="Refund $740")
        principal = card.locator("dd.principal")
        expect(principal).to_contain_text("verified")
        expect(principal).to_contain_text(issuer.url)
        expect(principal.locator(".chip")).to_have_text(["finance", "support"])
        expect(
            card.get_by_role("region", name="The principal's request (unverified)")
        ).to_contain_text("charged twice")
        other = page.locator("article.card", has_text="Refund $90").locator("dd.principal")
        expect(other).to_contain_text("claimed by the agent")
        ARTIFACTS.mkdir(exist_ok=True)
        card.screenshot(path=str(ARTIFACTS / "principal-verified-card.png"))
        page.screenshot(path=str(ARTIFACTS / "principal-batch.png"), full_page=True)
        chromium.close()
