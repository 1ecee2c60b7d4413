"""Single sign-on's accounts (review/sso_accounts.py), from the claims an OpenID provider
vouched for: who is made, updated or refused, and the roles and groups they get. The
whole flow against a real provider is tests/test_sso.py."""

import pytest
from sqlalchemy import select

from review.groups import groups_of
from review.models import User
from review.settings import SettingsError, load_settings
from review.sso_accounts import SsoRefused, role_for, sign_in
from review.users import check_password, disable_user, set_password
from tests.helpers import Browser, audit_events

ISSUER = "https://id.example.com"


def claims(sub="s-1", username="carol", groups=("countersign-reviewers",), **more):
    return {"sub": sub, "preferred_username": username, "groups": list(groups), **more}


def login(svc, given):
    with svc.db.write() as session:
        return sign_in(session, ISSUER, given, svc.settings, "198.51.100.7")


def refusal(svc, given) -> str:
    with pytest.raises(SsoRefused) as refused:
        login(svc, given)
    return refused.value.reason


def carol(svc) -> User:
    with svc.db.read() as session:
        return session.scalar(select(User).where(User.username == "carol"))


def test_the_first_login_makes_a_user_without_a_password(svc):
    signed = login(svc, claims(email="carol@example.com", email_verified=True))
    assert signed.created and signed.role == "reviewer"
    made = carol(svc)
    assert (made.sso_issuer, made.sso_subject, made.email) == (ISSUER, "s-1", "carol@example.com")
    assert not check_password(made, "") and not check_password(made, "!sso")
    assert made.last_login_at is not None
    created = audit_events(svc, "user.created")[-1]
    assert created.actor_id == "sso" and '"sso_issuer"' in created.payload


def test_later_logins_follow_the_claim_role_and_groups_and_keep_the_name(svc):
    login(svc, claims(groups=["countersign-reviewers", "payments", "emea"]))
    with svc.db.read() as session:  # every group of the claim, the role's included
        assert groups_of(session, "carol") == ["countersign-reviewers", "emea", "payments"]
    before = carol(svc).session_token
    again = login(svc, claims(username="carol.renamed", groups=["countersign-admins", "emea"]))
    assert not again.created and again.username == "carol" and again.role == "admin"
    assert again.joined == ("countersign-admins",)
    assert again.left == ("countersign-reviewers", "payments")
    assert carol(svc).role == "admin" and carol(svc).session_token != before  # old sessions end
    with svc.db.read() as session:
        assert groups_of(session, "carol") == ["countersign-admins", "emea"]
    assert audit_events(svc, "user.role_changed")[-1].actor_id == "sso"


def test_the_highest_role_of_the_groups_wins(svc):
    settings = svc.settings
    assert role_for(["countersign-auditors", "countersign-admins"], settings) == "admin"
    assert role_for(["countersign-auditors", "countersign-reviewers"], settings) == "reviewer"
    assert role_for(["countersign-auditors"], settings) == "auditor"
    assert role_for(["finance"], settings) is None


def test_a_single_group_may_come_as_a_string_and_odd_names_are_not_groups_here(svc):
    login(svc, claims() | {"groups": "countersign-auditors"})
    assert carol(svc).role == "auditor"
    login(svc, claims(groups=["countersign-auditors", " bad name", 7, "ok/path"]))
    with svc.db.read() as session:
        assert groups_of(session, "carol") == ["countersign-auditors", "ok/path"]


@pytest.mark.parametrize(
    "given,reason",
    [
        (claims(groups=["finance"]), "no_role"),
        (claims(groups=[]), "no_role"),
        (claims(username="policy"), "reserved_username"),
        (claims(username="Policy"), "reserved_username"),
        (claims(username="has space"), "bad_username"),
        (claims(username=None), "bad_username"),
        (claims(sub=""), "no_subject"),
        (claims(sub=None), "no_subject"),
    ],
)
def test_it_refuses_and_makes_nobody(svc, given, reason):
    assert refusal(svc, given) == reason
    with svc.db.read() as session:
        assert session.scalar(select(User.id).where(User.sso_subject.is_not(None))) is None


def test_a_local_account_of_the_same_name_is_never_taken_over(svc, people):
    assert refusal(svc, claims(username="rita", groups=["countersign-admins"])) == "username_taken"
    with svc.db.read() as session:
        rita = session.scalar(select(User).where(User.username == "rita"))
        assert (rita.role, rita.sso_subject) == ("reviewer", None)
    login(svc, claims(sub="s-1"))
    assert refusal(svc, claims(sub="s-2")) == "username_taken"  # another identity's name


def test_a_disabled_user_stays_out_and_has_no_password_to_set(svc):
    login(svc, claims())
    with svc.db.write() as session:
        disable_user(session, "carol")
    assert refusal(svc, claims()) == "disabled"
    with pytest.raises(Exception, match="logs in with SSO"), svc.db.write() as session:
        set_password(session, "carol", "a local passphrase")


def test_an_unverified_email_is_not_taken(svc):
    login(svc, claims(email="rita@example.com", email_verified=False))
    assert carol(svc).email is None  # else carol would count as rita the principal


def test_the_password_login_never_lets_an_sso_user_in(app, svc):
    login(svc, claims())
    with pytest.raises(AssertionError):
        Browser(app.test_client(), "carol", "!sso")


def test_sso_settings_come_all_three_or_none(tmp_path):
    base = {"instance_dir": str(tmp_path)}
    assert not load_settings(environ={}, overrides=base).sso_enabled
    with pytest.raises(SettingsError, match="COUNTERSIGN_OIDC_CLIENT_SECRET"):
        load_settings(environ={}, overrides={**base, "oidc_issuer": ISSUER, "oidc_client_id": "c"})
    with pytest.raises(SettingsError, match="https"):
        load_settings(
            environ={},
            overrides={**base, "oidc_issuer": "http://id.example.com", "oidc_client_id": "c",
                       "oidc_client_secret": "s"},
        )  # fmt: skip
    loopback = load_settings(
        environ={
            "COUNTERSIGN_OIDC_ISSUER": "http://127.0.0.1:9000/",
            "COUNTERSIGN_OIDC_CLIENT_ID": "c",
            "COUNTERSIGN_OIDC_CLIENT_SECRET": "s",
            "COUNTERSIGN_OIDC_ADMIN_GROUPS": "ops, security",
        },
        overrides=base,
    )
    assert loopback.sso_enabled and loopback.oidc_issuer == "http://127.0.0.1:9000"
    assert loopback.oidc_admin_groups == ("ops", "security")


def test_without_the_settings_there_is_no_sso_button_or_route(client):
    assert "Log in with SSO" not in client.get("/login").get_data(as_text=True)
    assert client.post("/login/sso").status_code in (400, 404)
    assert client.get("/login/sso/callback").status_code == 404
