"""The session cookie and the CSRF token, their signatures checked once a process
(review/web/signed_cookies.py): a remembered value is no more valid for it."""

import time
from datetime import timedelta

import pytest

from review.users import create_user
from tests.helpers import Browser, csrf_token

PASSWORD = "correct horse battery"
COOKIE = "countersign_session"


@pytest.fixture
def people(svc):
    with svc.db.write() as session:
        create_user(session, "rita", "reviewer", PASSWORD)
        create_user(session, "sam", "reviewer", PASSWORD)


def cookie_of(browser: Browser) -> str:
    return browser.client.get_cookie(COOKIE).value


def with_cookie(browser: Browser, value: str) -> None:
    browser.client.set_cookie(COOKIE, value)


def test_a_remembered_session_still_ends_at_its_age_limit(app, people):
    rita = Browser(app.test_client(), "rita")
    assert rita.get("/settings").status_code == 200  # verified, and remembered
    assert rita.get("/settings").status_code == 200
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(seconds=1)
    time.sleep(2.1)
    assert rita.get("/settings").status_code == 302  # to the login page


def test_it_refuses_a_tampered_copy_of_a_remembered_cookie(app, people):
    rita = Browser(app.test_client(), "rita")
    assert rita.get("/settings").status_code == 200
    value = cookie_of(rita)
    with_cookie(rita, value[:-2] + ("AA" if value[-2:] != "AA" else "BB"))
    assert rita.get("/settings").status_code == 302


def test_a_session_changed_by_one_request_is_not_changed_for_the_next(app, people):
    rita = Browser(app.test_client(), "rita")
    assert rita.get("/settings").status_code == 200
    before = cookie_of(rita)
    rita.post("/settings", {})  # flashes "Keyboard shortcuts are off." into the session
    assert cookie_of(rita) != before
    with_cookie(rita, before)  # the cookie from before the flash, sent again
    page = rita.get("/settings").get_data(as_text=True)
    assert "Keyboard shortcuts are" not in page
    assert "rita" in page


def test_a_new_secret_key_checks_a_remembered_cookie_afresh(app, people):
    rita = Browser(app.test_client(), "rita")
    assert rita.get("/settings").status_code == 200
    signed = cookie_of(rita)
    old, app.secret_key = app.secret_key, "another-secret-key-" + "y" * 32
    assert rita.get("/settings").status_code == 302
    app.config["SECRET_KEY_FALLBACKS"] = [old]  # a rotated key's sessions carry on
    with_cookie(rita, signed)
    assert rita.get("/settings").status_code == 200


def test_a_token_accepted_before_is_refused_with_another_persons_session(app, people):
    rita = Browser(app.test_client(), "rita")
    sam = Browser(app.test_client(), "sam")
    assert rita.post("/settings", {"keyboard_shortcuts": "on"}).status_code == 302
    assert rita.post("/settings", {"keyboard_shortcuts": "on"}).status_code == 302  # remembered
    sam.token = rita.token
    answer = sam.post("/settings", {"keyboard_shortcuts": "on"})
    assert answer.status_code == 400
    assert "CSRF" in answer.get_data(as_text=True)


def test_it_refuses_a_forged_token_after_the_real_one_was_remembered(app, people):
    rita = Browser(app.test_client(), "rita")
    assert rita.post("/settings", {}).status_code == 302
    real = rita.token
    rita.token = real[:-2] + ("AA" if real[-2:] != "AA" else "BB")
    assert rita.post("/settings", {}).status_code == 400
    rita.token = ""
    assert rita.post("/settings", {}).status_code == 400
    rita.token = real
    assert rita.post("/settings", {}).status_code == 302


def test_a_time_limit_set_on_tokens_holds_for_remembered_ones(app, people):
    rita = Browser(app.test_client(), "rita")
    assert rita.post("/settings", {}).status_code == 302
    app.config["WTF_CSRF_TIME_LIMIT"] = 1
    time.sleep(2.1)
    answer = rita.post("/settings", {})
    assert answer.status_code == 400
    assert "expired" in answer.get_data(as_text=True)


def test_pages_of_one_session_carry_one_token_and_a_new_login_another(app, people):
    rita = Browser(app.test_client(), "rita")
    first = csrf_token(rita.get("/settings").get_data(as_text=True))
    assert csrf_token(rita.get("/queue").get_data(as_text=True)) == first
    assert rita.post("/settings", {}).status_code == 302  # the page's token is good
    again = Browser(app.test_client(), "rita")  # a new login: a new session value
    assert again.token != first
    assert again.post("/settings", {}).status_code == 302


def test_with_a_time_limit_each_page_signs_its_own_token(app, people):
    app.config["WTF_CSRF_TIME_LIMIT"] = 3600
    rita = Browser(app.test_client(), "rita")
    first = csrf_token(rita.get("/settings").get_data(as_text=True))
    time.sleep(1.1)  # the token carries its signing time, in whole seconds
    assert csrf_token(rita.get("/settings").get_data(as_text=True)) != first


def test_a_request_that_leaves_the_session_alone_sets_no_cookie(app, people):
    rita = Browser(app.test_client(), "rita")
    rita.get("/settings")
    answer = rita.get("/settings")
    assert answer.status_code == 200
    assert "Set-Cookie" not in answer.headers
    assert "Cookie" in answer.headers.get("Vary", "")
    changed = rita.post("/settings", {})  # flashes: the session is written
    assert COOKIE in changed.headers.get("Set-Cookie", "")
