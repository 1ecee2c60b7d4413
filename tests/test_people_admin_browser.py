"""The users page in a real browser (Chromium over HTTP): an admin adds a user and
disables another, whose page open in their own browser is logged out at its next request."""

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.browser_support import ARTIFACTS, launch_options, live_server

pytestmark = pytest.mark.browser
PASSWORD = "correct horse battery"  # the people fixture's


@pytest.fixture
def site(app, people) -> Iterator[tuple[str, Browser]]:
    with live_server(app) as url, sync_playwright() as pw:
        chromium = pw.chromium.launch(**launch_options())
        yield url, chromium
        chromium.close()


def login(url: str, chromium: Browser, name: str, password: str = PASSWORD) -> Page:
    page = chromium.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.on("dialog", lambda d: pytest.fail(f"a dialog opened: {d.message}"))
    page.goto(url + "/login")
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(url + "/queue")
    return page


def test_an_admin_adds_a_user_and_disables_one_whose_open_page_then_logs_out(site):
    url, chromium = site
    ARTIFACTS.mkdir(exist_ok=True)
    rita = login(url, chromium, "rita")
    ada = login(url, chromium, "ada")

    ada.get_by_role("navigation", name="Main").get_by_role("link", name="Users").click()
    expect(ada).to_have_url(url + "/users")
    users = ada.get_by_role("table", name="Users")
    expect(users.get_by_role("row")).to_have_count(5)  # the header and four people
    ada.get_by_label("Username").fill("nina")
    ada.get_by_label("Role").select_option("auditor")
    ada.get_by_label("E-mail").fill("nina@example.com")
    ada.get_by_label("Password").fill("nina's passphrase")
    ada.get_by_role("button", name="Create user").click()
    expect(ada).to_have_url(url + "/users/nina")
    expect(ada.get_by_role("status")).to_have_text("Created nina.")
    login(url, chromium, "nina", "nina's passphrase").context.close()

    ada.goto(url + "/users")
    expect(users.get_by_role("row", name="nina")).to_contain_text("auditor")
    ada.screenshot(path=str(ARTIFACTS / "users.png"), full_page=True)
    users.get_by_role("link", name="rita").click()
    expect(ada).to_have_url(url + "/users/rita")
    ada.get_by_role("button", name="Disable").click()
    expect(ada.get_by_role("status")).to_contain_text("Disabled rita")
    expect(ada.get_by_role("button", name="Enable")).to_be_visible()
    ada.screenshot(path=str(ARTIFACTS / "user-disabled.png"), full_page=True)

    # rita's page is still on screen; her next request finds her session ended.
    rita.get_by_role("navigation", name="Main").get_by_role("link", name="Agents").click()
    expect(rita).to_have_url(url + "/login?next=%2Fagents")
    expect(rita.get_by_role("button", name="Log in")).to_be_visible()
    rita.get_by_label("Username").fill("rita")
    rita.get_by_label("Password").fill(PASSWORD)
    rita.get_by_role("button", name="Log in").click()
    expect(rita.get_by_role("alert")).to_have_text("Wrong username or password.")
    rita.screenshot(path=str(ARTIFACTS / "user-disabled-login.png"), full_page=True)

    ada.goto(url + "/users/ada")  # her own page: no way to lock herself out
    expect(ada.get_by_role("button", name="Disable")).to_be_disabled()
    expect(ada.get_by_role("button", name="Change role")).to_be_disabled()
