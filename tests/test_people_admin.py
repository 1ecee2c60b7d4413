"""The users page (issue 18, item 4; PROTOCOL.md section 15): admins list, create,
disable and enable users, change roles and set passwords; each change is one audited
transaction by the admin, and the sessions it ends end at their next request."""

import json

import pytest
from sqlalchemy import select

from review.audit.verify import verify_chain
from review.models import User
from tests.helpers import Browser, audit_events, count_rows, filled_row

PASSWORD = "correct horse battery"
COOKIE = "countersign_session"


@pytest.fixture
def ada(app, people) -> Browser:
    return Browser(app.test_client(), "ada")


def user(svc, name: str) -> User | None:
    with svc.db.read() as session:
        return session.scalar(select(User).where(User.username == name))


def logged_out(client) -> bool:
    response = client.get("/queue")
    return response.status_code == 302 and "/login" in response.headers["Location"]


def flashed(response) -> str:
    return response.get_data(as_text=True)


def test_only_admins_see_the_users_page(app, people, ada):
    page = ada.get("/users").get_data(as_text=True)
    assert 'href="/users"' in page  # in the navigation
    for name in ("rita", "sam", "audrey"):
        assert f'href="/users/{name}"' in page and f"{name}@example.com" in page
    for name in ("rita", "audrey"):
        other = Browser(app.test_client(), name)
        assert other.get("/users").status_code == 403
        assert other.get("/users/sam").status_code == 403
        assert other.post("/users/sam/disable").status_code == 403
        assert 'href="/users"' not in other.get("/queue").get_data(as_text=True)
    assert user(app.extensions["countersign"], "sam").is_active
    assert app.test_client().get("/users").status_code == 302  # to the login page


def test_it_shows_the_last_login_once_there_is_one(app, svc, people, ada):
    page = ada.get("/users").get_data(as_text=True)
    assert page.count("not known") == 3  # rita, sam and audrey never logged in; ada just did
    assert user(svc, "ada").last_login_at is not None
    Browser(app.test_client(), "rita")
    assert user(svc, "rita").last_login_at is not None
    assert ada.get("/users").get_data(as_text=True).count("not known") == 2


def test_an_admin_creates_a_user_who_can_then_log_in(app, svc, ada):
    response = ada.post(
        "/users",
        {"username": "nina", "role": "auditor", "email": "nina@example.com", "password": PASSWORD},
    )
    assert response.status_code == 302 and response.headers["Location"] == "/users/nina"
    created = user(svc, "nina")
    assert (created.role, created.email, created.is_active) == ("auditor", "nina@example.com", True)
    Browser(app.test_client(), "nina")
    event = audit_events(svc, "user.created")[-1]
    assert event.actor_kind == "user" and event.actor_id == "ada"
    assert json.loads(event.payload)["username"] == "nina"


@pytest.mark.parametrize(
    "form,status,message",
    [
        ({"username": "rita", "role": "reviewer", "password": PASSWORD}, 409, "already exists"),
        ({"username": "policy", "role": "reviewer", "password": PASSWORD}, 422, "reserved"),
        ({"username": "nina", "role": "owner", "password": PASSWORD}, 422, "role must be"),
        ({"username": "nina", "role": "reviewer", "password": "short"}, 422, "at least 8"),
        ({"username": "bad name", "role": "reviewer", "password": PASSWORD}, 422, "username"),
    ],
)
def test_it_refuses_a_bad_new_user_and_keeps_what_was_typed(svc, ada, form, status, message):
    before = count_rows(svc, User)
    response = ada.post("/users", form)
    assert response.status_code == status
    page = response.get_data(as_text=True)
    assert message in page and f'value="{form["username"]}"' in page
    assert count_rows(svc, User) == before


def test_disabling_ends_the_users_live_session_at_its_next_request(app, svc, ada):
    rita = Browser(app.test_client(), "rita")
    assert rita.get("/queue").status_code == 200
    response = ada.post("/users/rita/disable")
    assert response.status_code == 302
    assert "Disabled rita" in flashed(ada.get("/users/rita"))
    assert logged_out(rita.client)
    refused = rita.client.post(
        "/login", data={"username": "rita", "password": PASSWORD, "csrf_token": rita.token}
    )
    assert refused.status_code == 401
    assert "already disabled" in flashed(ada.client.post(
        "/users/rita/disable", data={"csrf_token": ada.token}, follow_redirects=True))  # fmt: skip
    assert ada.post("/users/rita/enable").status_code == 302
    assert logged_out(rita.client)  # enabling does not bring the old session back
    Browser(app.test_client(), "rita")
    kinds = [(e.event_type, e.actor_id) for e in audit_events(svc) if e.event_type[:5] == "user."]
    assert kinds[-2:] == [("user.disabled", "ada"), ("user.enabled", "ada")]


def test_a_new_role_ends_the_users_sessions_and_they_return_with_it(app, svc, ada):
    sam = Browser(app.test_client(), "sam")
    assert ada.post("/users/sam/role", {"role": "auditor"}).status_code == 302
    assert user(svc, "sam").role == "auditor"
    assert logged_out(sam.client)
    sam = Browser(app.test_client(), "sam")
    assert "(auditor)" in sam.get("/queue").get_data(as_text=True)
    event = audit_events(svc, "user.role_changed")[-1]
    assert event.actor_id == "ada"
    assert json.loads(event.payload) == {
        "username": "sam", "role": "auditor", "previous_role": "reviewer"}  # fmt: skip
    page = ada.client.post(
        "/users/sam/role", data={"role": "auditor", "csrf_token": ada.token}, follow_redirects=True
    ).get_data(as_text=True)
    assert "sam was already auditor" in page
    page = ada.client.post(
        "/users/sam/role", data={"role": "root", "csrf_token": ada.token}, follow_redirects=True
    ).get_data(as_text=True)
    assert "role must be one of" in page and user(svc, "sam").role == "auditor"


def test_a_new_password_ends_the_users_sessions(app, svc, ada):
    rita = Browser(app.test_client(), "rita")
    assert ada.post("/users/rita/password", {"password": "a fresh passphrase"}).status_code == 302
    assert logged_out(rita.client)
    Browser(app.test_client(), "rita", "a fresh passphrase")
    assert audit_events(svc, "user.password_changed")[-1].actor_id == "ada"
    short = ada.client.post(
        "/users/rita/password", data={"password": "short", "csrf_token": ada.token},
        follow_redirects=True)  # fmt: skip
    assert "at least 8" in short.get_data(as_text=True)
    Browser(app.test_client(), "rita", "a fresh passphrase")  # unchanged


def test_an_admin_cannot_disable_or_demote_themselves(svc, ada):
    for path, data in (("/users/ada/disable", {}), ("/users/ada/role", {"role": "reviewer"})):
        page = ada.client.post(
            path, data={**data, "csrf_token": ada.token}, follow_redirects=True
        ).get_data(as_text=True)
        assert "yourself; another admin can" in page
    assert user(svc, "ada").role == "admin" and user(svc, "ada").is_active
    assert ada.get("/queue").status_code == 200


def test_every_change_needs_the_csrf_token_and_an_existing_user(svc, ada):
    for path in ("/users/rita/disable", "/users/rita/password", "/users/rita/role", "/users"):
        form = {"username": "nina", "password": PASSWORD, "role": "admin"}
        assert ada.client.post(path, data=form).status_code == 400
    assert user(svc, "rita").is_active and user(svc, "rita").role == "reviewer"
    for path in ("/users/nobody/disable", "/users/nobody/enable", "/users/nobody/password"):
        assert ada.post(path, {"password": PASSWORD}).status_code == 404
    assert ada.get("/users/nobody").status_code == 404
    with svc.db.read() as session:
        assert verify_chain(session).ok


def test_the_upgrade_takes_each_last_login_from_the_audit_log(empty_database_url):
    # A database as it was before migration 0015: users, and their logins only in the log.
    # (Migration 0025's shards cannot be downgraded once used, so it is built at 0014.)
    from datetime import UTC, datetime

    from sqlalchemy import MetaData, Table, text

    from review.db import Database
    from review.migrate import upgrade

    logged_at = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
    db = Database(empty_database_url)
    try:
        upgrade(db, "0014")
        meta = MetaData()
        with db.engine.begin() as conn:
            users = Table("users", meta, autoload_with=conn)
            events = Table("audit_events", meta, autoload_with=conn)
            for n, name in enumerate(("rita", "sam"), start=1):
                conn.execute(users.insert().values(filled_row(users, id=n, username=name)))
            for n, (name, at) in enumerate(
                (("rita", datetime(2026, 11, 1, tzinfo=UTC)), ("rita", logged_at)), start=1
            ):
                login = {"seq": n, "event_type": "login.succeeded", "actor_kind": "user"}
                row = filled_row(events, **login, actor_id=name, at=at, hash=f"{n:064x}")
                conn.execute(events.insert().values(row))
        upgrade(db)
        with db.engine.connect() as conn:
            last = dict(conn.execute(text("SELECT username, last_login_at FROM users")).all())
        assert {name: str(at)[:19] if at else None for name, at in last.items()} == {
            "rita": "2026-11-20 09:30:00",
            "sam": None,
        }
    finally:
        db.dispose()
