"""`users create` and `agents create`: hashed passwords, sealed secrets, audited."""

import json

from sqlalchemy import select

from review.models import AgentSecret, AuditEvent, User
from review.signing import sign_headers, verify


def _create_user(runner, name="olivia", role="reviewer", password="correct horse battery"):
    return runner.invoke(args=["users", "create", name, "--role", role], input=password + "\n")


def test_users_create_reads_the_password_from_stdin_and_hashes_it(runner, svc):
    result = _create_user(runner)
    assert result.exit_code == 0, result.output
    with svc.db.read() as session:
        user = session.scalar(select(User).where(User.username == "olivia"))
        assert user.role == "reviewer"
        assert user.password_hash.startswith("$argon2")
        assert "correct horse" not in user.password_hash


def test_users_create_refuses_bad_input_with_a_clear_message(runner, svc):
    assert "at least 8" in _create_user(runner, password="short").output
    bad_role = _create_user(runner, role="god")
    assert bad_role.exit_code != 0 and "god" in bad_role.output
    assert _create_user(runner).exit_code == 0
    duplicate = _create_user(runner)
    assert duplicate.exit_code == 1 and "already exists" in duplicate.output
    with svc.db.read() as session:
        assert len(session.scalars(select(User)).all()) == 1


def test_agents_create_prints_a_fresh_whsec_secret_as_the_last_line(runner, svc):
    _create_user(runner)
    result = runner.invoke(
        args=[
            "agents",
            "create",
            "billing-bot",
            "--owner",
            "olivia",
            "--callback-url",
            "https://1.1.1.1/hook",  # a public address: checked, never called
        ]
    )
    assert result.exit_code == 0, result.output
    secret = result.output.strip().splitlines()[-1]
    assert secret.startswith("whsec_")
    body = b'{"x":1}'
    headers = sign_headers(secret, "msg_1", body)
    with svc.db.read() as session:
        from review.agents.registry import find_agent, signers

        agent = find_agent(session, "billing-bot")
        assert [u.username for u in agent.owners] == ["olivia"]
        assert agent.callback_url == "https://1.1.1.1/hook"  # public: checked, never called
        signer = signers(session, slug="billing-bot")[0]
        assert verify(svc.secrets.secrets_for(signer), headers, body) == "msg_1"
        stored = session.scalars(select(AgentSecret)).one()
        assert secret not in stored.ciphertext and secret[6:] not in stored.ciphertext


def test_the_secret_is_never_shown_again(runner):
    _create_user(runner)
    secret = runner.invoke(args=["agents", "create", "ops", "--owner", "olivia"]).output
    secret = secret.strip().splitlines()[-1]
    listing = runner.invoke(args=["agents", "list"]).output
    assert "ops\tactive\towners=olivia" in listing
    assert secret not in listing and secret[6:] not in listing


def test_agents_create_refuses_bad_slugs_unknown_owners_and_bad_urls(runner):
    _create_user(runner)
    assert (
        "slug must match"
        in runner.invoke(args=["agents", "create", "Bad_Slug", "--owner", "olivia"]).output
    )
    assert (
        "not a user"
        in runner.invoke(args=["agents", "create", "ok-slug", "--owner", "nobody"]).output
    )
    assert (
        "http"
        in runner.invoke(
            args=["agents", "create", "ok-slug", "--owner", "olivia", "--callback-url", "ftp://x"]
        ).output
    )
    assert "no agents" in runner.invoke(args=["agents", "list"]).output


def test_user_and_agent_creation_are_the_first_audit_events(runner, svc):
    _create_user(runner)
    runner.invoke(args=["agents", "create", "ops", "--owner", "olivia"])
    with svc.db.read() as session:
        events = session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
    assert [e.event_type for e in events] == ["user.created", "agent.created"]
    created = json.loads(events[1].payload)
    assert created["owners"] == ["olivia"] and "secret_fingerprint" in created
    assert "whsec_" not in events[1].payload
    assert runner.invoke(args=["audit", "verify"]).output.strip().startswith("OK 2 events")
