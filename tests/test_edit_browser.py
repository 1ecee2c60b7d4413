"""Edit, then approve, in a real browser (Debian's Chromium through Playwright): the JSON
editor and the per-field inputs, the new diff, and what the agent then reads."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.browser_support import (
    ARTIFACTS,
    live_server,
    logged_in_page,
    own_windows,
    settled,
    start_batch,
)
from tests.helpers import refund
from tests.test_browser import CONSOLE_ERRORS, Site, status
from tests.test_edits import POLICY

pytestmark = pytest.mark.browser


@pytest.fixture
def site(chromium, make_app, make_agent, people, tmp_path) -> Iterator[Site]:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)  # refunds over 5000 are critical; money "offshore" is denied
    app = make_app(agent_rate=0, policy_file=str(policy))
    agent = make_agent().on(app)
    CONSOLE_ERRORS.clear()
    with live_server(app) as url, own_windows(chromium):
        yield Site(url, agent, chromium)


def login(site, name):
    """`name` logged in, in a 1280x720 window (the screenshots' size)."""
    return logged_in_page(site.chromium, site.url, name, console_errors=CONSOLE_ERRORS)


def shot(page, name: str, element=None) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    if element is not None:
        element.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / name))


def test_a_reviewer_edits_one_field_sees_the_new_diff_and_accepts_it(site):
    d_id = site.agent.defer(refund()).get_json()["id"]
    page = login(site, "rita")
    start_batch(page)
    card = page.locator(f"#card-{d_id}")
    card.get_by_text("Edit arguments").click()
    fields = card.get_by_role("form", name="Edit each field")
    amount = settled(fields.get_by_label("amount"))
    expect(amount).to_have_value("740")
    amount.fill("500")
    # The JSON editor follows the field, and the new diff arrives without a click. (Key
    # order is the database's: PostgreSQL's jsonb keeps its own.)
    editor = card.get_by_label("Arguments (JSON)")
    expect(editor).to_have_value(re.compile(r'"amount": 500\n|"amount": 500,'))
    expect(editor).to_have_value(re.compile(r'"invoice": "INV-1"'))
    preview = card.locator(f"#edit-preview-{d_id}")
    changes = preview.get_by_role("table", name="New diff: the agent's arguments against yours")
    expect(changes).to_contain_text("/amount")
    expect(changes).to_contain_text("740")
    expect(changes).to_contain_text("500")
    expect(preview).to_contain_text("your approval is enough")
    shot(page, "edit-fields-diff.png", preview)
    fields.get_by_role("button", name="Accept edited").click()
    expect(page.locator(f"#card-{d_id}")).to_contain_text("Approved as edited.")
    shot(page, "edit-fields-approved.png", page.locator(f"#card-{d_id}"))
    d = status(site.agent, d_id)
    assert d["status"] == "approved" and d["action"]["args"] == {"invoice": "INV-1", "amount": 500}
    assert d["decision"]["edited"] is True and d["decision"]["decided_by"] == ["rita"]
    assert CONSOLE_ERRORS == []


def test_the_json_editor_says_what_is_wrong_and_keeps_the_text(site):
    d_id = site.agent.defer(refund()).get_json()["id"]
    page = login(site, "rita")
    start_batch(page)
    card = page.locator(f"#card-{d_id}")
    card.get_by_text("Edit arguments").click()
    editor = settled(card.get_by_label("Arguments (JSON)"))
    editor.fill('{"invoice": "INV-1", "amount": 300,}')
    expect(card.locator(".json-error")).to_contain_text("Not valid JSON")
    # The server's strict reading says so too, in the preview.
    expect(card.locator(f"#edit-preview-{d_id}")).to_contain_text("not valid JSON")
    shot(page, "edit-json-invalid.png", editor)
    editor.fill('{"invoice": "INV-1", "amount": 300, "memo": "partial refund"}')
    expect(card.locator(".json-error")).to_have_text("")
    preview = card.locator(f"#edit-preview-{d_id}")
    expect(preview).to_contain_text("/memo")
    expect(preview).to_contain_text("partial refund")
    shot(page, "edit-json-diff.png", preview)
    card.get_by_role("form", name="Edit as JSON").get_by_role(
        "button", name="Accept edited"
    ).click()
    expect(page.locator(f"#card-{d_id}")).to_contain_text("Approved as edited.")
    d = status(site.agent, d_id)
    assert d["action"]["args"] == {"invoice": "INV-1", "amount": 300, "memo": "partial refund"}
    assert sorted(op["op"] for op in d["decision"]["action_patch"]) == ["add", "replace"]
    assert CONSOLE_ERRORS == []


def test_an_edit_to_a_critical_amount_waits_for_a_second_reviewer_who_sees_the_edit(site):
    d_id = site.agent.defer(refund()).get_json()["id"]
    rita = login(site, "rita")
    start_batch(rita)
    card = rita.locator(f"#card-{d_id}")
    card.get_by_text("Edit arguments").click()
    editor = settled(card.get_by_label("Arguments (JSON)"))
    preview = rita.locator(f"#edit-preview-{d_id}")
    editor.fill('{"invoice": "INV-1", "amount": 74000, "to": "offshore"}')
    expect(preview.get_by_role("alert")).to_contain_text("policy denies the edited action")
    editor.fill('{"invoice": "INV-1", "amount": 74000}')
    expect(preview).to_contain_text("score 80 critical")
    expect(preview).to_contain_text("needs 2 approvals")
    card.get_by_role("form", name="Edit as JSON").get_by_role(
        "button", name="Accept edited"
    ).click()
    expect(rita.locator(f"#card-{d_id}")).to_contain_text("1 of 2")
    sam = login(site, "sam")
    start_batch(sam)
    edited = sam.locator(f"#card-{d_id}").get_by_role("region", name="Edited arguments")
    expect(edited).to_contain_text("/args/amount")
    expect(edited).to_contain_text("74000")
    shot(sam, "edit-second-reviewer.png", edited)
    sam.locator(f"#card-{d_id}").get_by_role("button", name="Approve", exact=True).click()
    expect(sam.locator(f"#card-{d_id}")).to_contain_text("Approved.")
    d = status(site.agent, d_id)
    assert d["decision"]["decided_by"] == ["rita", "sam"] and d["decision"]["edited"] is True
    assert CONSOLE_ERRORS == []


def test_the_item_page_offers_the_editor_to_the_holder(site):
    d_id = site.agent.defer(refund()).get_json()["id"]
    page = login(site, "rita")
    start_batch(page)
    page.goto(f"{site.url}/deferrals/{d_id}")
    page.get_by_text("Edit arguments").click()
    page.get_by_role("form", name="Edit each field").get_by_label("amount").fill("20")
    expect(page.locator(f"#edit-preview-{d_id}")).to_contain_text("/amount")
    page.get_by_role("form", name="Edit each field").get_by_role(
        "button", name="Accept edited"
    ).click()
    expect(page.get_by_role("region", name="Edited arguments")).to_contain_text("/args/amount")
    shot(page, "edit-item-page.png")
    assert status(site.agent, d_id)["action"]["args"]["amount"] == 20
