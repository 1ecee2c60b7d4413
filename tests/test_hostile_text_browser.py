"""Hidden characters in agent text, as a reviewer sees them: in a real Chromium, a path
"\\u202efdp.exe" shows its override as a marked token and never reads "exe.pdf".
"""

import pytest
from playwright.sync_api import expect, sync_playwright

from review.users import create_user
from tests.browser_support import ARTIFACTS, launch_options, live_server, start_batch
from tests.helpers import AgentClient, refund

pytestmark = pytest.mark.browser
PASSWORD = "correct horse battery"
SPOOF = "\u202efdp.exe"  # with the override obeyed, this reads "exe.pdf"


def test_a_right_to_left_override_is_shown_marked_and_not_obeyed_on_the_card(
    make_app, make_agent, svc
):
    app = make_app(agent_rate=0)
    with svc.db.write() as session:
        create_user(session, "rita", "reviewer", PASSWORD, email="rita@example.com")
    base = make_agent()
    agent = AgentClient(app.test_client(), base.slug, base.secret)
    created = agent.defer(
        refund(
            summary=f"Email {SPOOF} to the customer",
            action={"tool": "mail.attach", "args": {"path": f"/tmp/{SPOOF}"}},
            before={"attachment": "invoice.pdf", "notes": "line 1\ninvoice.pdf\nline 3"},
            after={"attachment": SPOOF, "notes": f"line 1\n{SPOOF}\nline 3"},
        )
    )
    assert created.status_code == 202, created.get_data(as_text=True)
    errors: list[str] = []
    with live_server(app) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(**launch_options())
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        page.goto(url + "/login")
        page.get_by_label("Username").fill("rita")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page).to_have_url(url + "/queue")
        start_batch(page)
        expect(page).to_have_url(url + "/batch")
        card = page.locator("article.card")
        expect(card).to_have_count(1)

        summary = card.get_by_role("heading", level=2)
        expect(summary).to_have_text("Email ⟨U+202E⟩fdp.exe to the customer")
        marker = summary.locator(".hidden-char")
        expect(marker).to_have_attribute("title", "U+202E RIGHT-TO-LEFT OVERRIDE")
        expect(marker).to_be_visible()
        # The marker is set apart: a red border and its own colours.
        assert marker.evaluate("e => getComputedStyle(e).borderTopStyle") == "solid"
        card.locator("details.more > summary").click()  # More: the arguments, every change
        expect(card.locator("details.more pre.json").first).to_contain_text(
            '"/tmp/⟨U+202E⟩fdp.exe"'
        )
        changes = card.locator(".diff.preview")
        expect(changes).to_contain_text("⟨U+202E⟩fdp.exe")
        # A long text's line diff, computed at intake, marks it too.
        expect(changes.locator("pre.linediff .ld-add")).to_have_text("+⟨U+202E⟩fdp.exe")

        # What the reviewer reads, in visual order: never "exe.pdf", never the raw override.
        shown = card.inner_text()
        assert "\u202e" not in shown and "exe.pdf" not in shown
        assert shown.count("⟨U+202E⟩fdp.exe") >= 4  # summary, arguments, two changes
        # Laid out left to right, as sent: "f" is drawn left of the last "e" of "fdp.exe"
        # (the override obeyed would draw "fdp.exe" reversed, reading "exe.pdf").
        order = marker.evaluate(
            """e => {
                const text = e.nextSibling, range = document.createRange();
                const x = i => { range.setStart(text, i); range.setEnd(text, i + 1);
                                 return range.getBoundingClientRect().x; };
                return [text.data.slice(0, 7), x(0), x(6), e.getBoundingClientRect().x];
            }"""
        )
        assert order[0] == "fdp.exe" and order[3] < order[1] < order[2], order

        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "hostile-text-card.png"), full_page=True)
        browser.close()
    assert errors == []
