"""Log in with SSO (issue 18, item 4; PROTOCOL.md section 15) against a real OpenID
provider (tests/oidc_provider.py: panva's oidc-provider on Node.js), in Chromium: the
login page, the provider's login and consent, and back, logged in with the role and
groups the provider's groups claim gives; and the refusals."""

import re
from collections.abc import Iterator
from typing import NamedTuple

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select

from review.groups import groups_of
from review.models import User
from tests.browser_support import ARTIFACTS, live_server, own_windows
from tests.helpers import audit_events, csrf_token, free_port

pytest_plugins = ["tests.oidc_provider"]
pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]  # the first run installs npm's

ACCOUNTS = {
    "alice-sub": {
        "preferred_username": "alice",
        "email": "alice@example.com",
        "email_verified": True,
        "groups": ["countersign-admins", "payments"],
    },
    "bob-sub": {"preferred_username": "bob", "groups": ["countersign-reviewers"]},
    "eve-sub": {"preferred_username": "eve", "groups": ["marketing"]},
    "impostor-sub": {"preferred_username": "rita", "groups": ["countersign-admins"]},
}


class Site(NamedTuple):
    url: str
    app: object
    chromium: Browser


@pytest.fixture
def site(chromium, make_app, oidc_provider, people) -> Iterator[Site]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    provider = oidc_provider(url + "/login/sso/callback", ACCOUNTS)
    app = make_app(
        public_url=url,
        oidc_issuer=provider.issuer,
        oidc_client_id=provider.client_id,
        oidc_client_secret=provider.client_secret,
        oidc_scopes="openid email profile groups",
    )
    with live_server(app, port), own_windows(chromium):
        yield Site(url, app, chromium)


def sso_login(site: Site, login: str, screenshots: str = "", meddle=None) -> Page:
    """Log in with SSO as `login` at the provider (its development pages take any password);
    `meddle(page)` runs on the provider's login page, before the login."""
    page = site.chromium.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(site.url + "/login")
    page.get_by_role("button", name="Log in with SSO").click()
    if meddle:
        meddle(page)
    page.locator("input[name=login]").fill(login)
    page.locator("input[name=password]").fill("any password")
    if screenshots:
        page.screenshot(path=str(ARTIFACTS / f"{screenshots}-provider-login.png"))
    page.get_by_role("button", name="Sign-in").click()
    page.get_by_role("button", name="Continue").click()  # the consent page
    page.wait_for_url(f"{site.url}/**")
    return page


def user(site: Site, name: str) -> User | None:
    with site.app.extensions["countersign"].db.read() as session:
        return session.scalar(select(User).where(User.username == name))


def test_a_person_logs_in_with_sso_and_gets_the_role_and_groups_of_their_claim(site):
    ARTIFACTS.mkdir(exist_ok=True)
    alice = sso_login(site, "alice-sub", screenshots="sso")
    expect(alice).to_have_url(site.url + "/queue")
    expect(alice.locator(".who")).to_contain_text("alice (admin)")
    alice.screenshot(path=str(ARTIFACTS / "sso-logged-in.png"), full_page=True)
    made = user(site, "alice")
    assert (made.role, made.email, made.sso_subject) == ("admin", "alice@example.com", "alice-sub")
    svc = site.app.extensions["countersign"]
    with svc.db.read() as session:
        assert groups_of(session, "alice") == ["countersign-admins", "payments"]
    # An admin's page works, and the session is an ordinary one: logging out ends it.
    alice.get_by_role("navigation", name="Main").get_by_role("link", name="Users").click()
    expect(alice.get_by_role("table", name="Users")).to_contain_text("alice")
    bob = sso_login(site, "bob-sub")
    expect(bob.locator(".who")).to_contain_text("bob (reviewer)")
    assert user(site, "bob").email is None  # bob's provider vouched for no email
    events = audit_events(svc, "login.succeeded")
    assert [e.actor_id for e in events[-2:]] == ["alice", "bob"]


def test_it_refuses_a_person_whose_groups_give_no_role(site):
    eve = sso_login(site, "eve-sub")
    expect(eve).to_have_url(re.compile(re.escape(site.url + "/login/sso/callback?")))
    expect(eve.get_by_role("alert")).to_contain_text("Your groups give you no role here")
    eve.screenshot(path=str(ARTIFACTS / "sso-refused.png"), full_page=True)
    assert user(site, "eve") is None
    svc = site.app.extensions["countersign"]
    refused = audit_events(svc, "login.sso_refused")[-1]
    assert '"reason":"no_role"' in refused.payload and refused.actor_id == "eve"


def test_it_never_takes_over_a_local_account_of_the_same_name(site):
    page = sso_login(site, "impostor-sub")
    expect(page.get_by_role("alert")).to_contain_text("'rita' belongs to a local account")
    rita = user(site, "rita")
    assert (rita.role, rita.sso_subject) == ("reviewer", None)


def test_it_refuses_a_callback_whose_state_is_not_the_one_it_sent(site):
    client = site.app.test_client()
    token = csrf_token(client.get("/login").get_data(as_text=True))
    started = client.post("/login/sso", data={"csrf_token": token})
    assert started.status_code == 302
    to_provider = started.headers["Location"]
    assert "code_challenge_method=S256" in to_provider and "nonce=" in to_provider
    forged = client.get("/login/sso/callback", query_string={"code": "x", "state": "forged"})
    assert forged.status_code == 400
    assert "Single sign-on failed" in forged.get_data(as_text=True)
    assert client.get("/queue").status_code == 302  # not logged in
    svc = site.app.extensions["countersign"]
    assert '"reason":"oauth_error"' in audit_events(svc, "login.sso_refused")[-1].payload


def test_it_refuses_an_id_token_whose_nonce_is_not_the_one_it_sent(site):
    """The browser's session is changed to expect another nonce while the person is at
    the provider: the ID token that comes back (with the nonce sent) no longer matches."""
    serializer = site.app.session_interface.get_signing_serializer(site.app)

    def other_nonce(page: Page) -> None:
        cookies = page.context.cookies(site.url)
        cookie = next(c for c in cookies if c["name"] == "countersign_session")
        data = serializer.loads(cookie["value"])
        (key,) = [k for k in data if k.startswith("_state_sso_")]
        data[key]["data"]["nonce"] = "not-the-nonce-that-was-sent"
        page.context.add_cookies([{**cookie, "value": serializer.dumps(data)}])

    page = sso_login(site, "alice-sub", meddle=other_nonce)
    expect(page.get_by_role("alert")).to_contain_text("Single sign-on failed")
    expect(page.get_by_role("alert")).to_contain_text("nonce")
    assert user(site, "alice") is None
