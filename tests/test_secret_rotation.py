"""Rotating SECRET_KEY (docs/SECRETS.md): older keys in SECRET_KEY_FALLBACKS keep sealed
agent secrets and browser sessions working; `secrets reseal` moves every sealed value to
the current key, after which the fallbacks can go."""

import json
import uuid

from sqlalchemy import select

from review.audit.verify import verify_chain
from review.doors.aap.tables import AapInstance
from review.models import AgentSecret
from review.sealing import SecretBox
from tests.helpers import Browser, audit_events

OLD = "test-secret-key-" + "x" * 32  # the key every test app starts with (conftest)
NEW = "the-next-secret-key-" + "y" * 32
LOST = "a-key-nobody-has-any-more-" + "z" * 32
COOKIE = "countersign_session"


def reseal(app):
    return app.test_cli_runner().invoke(args=["secrets", "reseal"])


def sealed_values(svc) -> list[str]:
    with svc.db.read() as session:
        values = list(session.scalars(select(AgentSecret.ciphertext).order_by(AgentSecret.id)))
        for instance in session.scalars(select(AapInstance)):
            values += [instance.signing_secret, instance.provisioned]
        return values


def aap_instance(svc, agent_slug: str) -> None:
    """An AAP registration's sealed values, as the door stores them (sealed with OLD)."""
    from review.models import Agent

    with svc.db.write() as session:
        agent_id = session.scalar(select(Agent.id).where(Agent.slug == agent_slug))
        session.add(
            AapInstance(
                id=str(uuid.uuid4()),
                agent_id=agent_id,
                name="instance",
                signing_secret=svc.box.seal("whsec_delivery"),
                provision_key="k1",
                provision_hash="0" * 64,
                provisioned=svc.box.seal('{"credential": "c"}'),
            )
        )


def test_an_agent_keeps_verifying_while_the_old_key_is_a_fallback(make_app, agent):
    rotated = make_app(secret_key=NEW, secret_key_fallbacks=f" , {OLD}")
    assert agent.on(rotated).defer().status_code == 202


def test_without_the_old_key_the_agent_gets_401_not_a_500(make_app, agent):
    rotated = make_app(secret_key=NEW)
    response = agent.on(rotated).defer()
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"


def test_reseal_moves_every_sealed_value_to_the_current_key(make_app, agent, svc):
    aap_instance(svc, agent.slug)
    before = sealed_values(svc)
    rotated = make_app(secret_key=NEW, secret_key_fallbacks=OLD)
    result = reseal(rotated)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "agent_secrets\tresealed=1\talready_current=0",
        "aap_delivery_secrets\tresealed=1\talready_current=0",
        "aap_registration_answers\tresealed=1\talready_current=0",
        "service_secrets\tresealed=0\talready_current=0",
        "resealed 3 values with the current SECRET_KEY",
    ]
    after = sealed_values(svc)
    new_only = SecretBox(NEW)
    assert [new_only.open(v) for v in after] == [svc.box.open(v) for v in before]
    assert not any(SecretBox(OLD).is_current(v) for v in after)

    # The fallbacks can go: the agent verifies with the new key alone, not with the old.
    assert agent.on(make_app(secret_key=NEW)).defer().status_code == 202
    assert agent.on(make_app(secret_key=OLD)).defer().status_code == 401

    again = reseal(make_app(secret_key=NEW))
    assert "agent_secrets\tresealed=0\talready_current=1" in again.output
    events = audit_events(svc, "secrets.resealed")
    assert len(events) == 2
    assert json.loads(events[0].payload)["agent_secrets"] == {"resealed": 1, "current": 0}
    assert events[0].actor_id == "cli"
    with svc.db.read() as session:
        assert verify_chain(session).ok


def test_reseal_changes_nothing_when_a_value_opens_with_no_key(make_app, agent, svc):
    from review.agents.registry import create_agent

    with svc.db.write() as session:  # sealed under a key that is in no list any more
        create_agent(session, SecretBox(LOST), "lost-bot", ["olivia"])
    before = sealed_values(svc)
    events_before = len(audit_events(svc))
    result = reseal(make_app(secret_key=NEW, secret_key_fallbacks=OLD))
    assert result.exit_code == 1
    assert "agent_secrets: row 2:" in result.output and "nothing was resealed" in result.output
    assert sealed_values(svc) == before  # billing-bot's (row 1) was not resealed either
    assert len(audit_events(svc)) == events_before
    assert audit_events(svc, "secrets.resealed") == []


def test_a_browser_session_outlives_the_rotation_while_the_old_key_is_a_fallback(
    app, make_app, people
):
    browser = Browser(app.test_client(), "rita")
    cookie = browser.client.get_cookie(COOKIE).value
    for fallbacks, expected in ((OLD, 200), ("", 302)):
        rotated = make_app(secret_key=NEW, secret_key_fallbacks=fallbacks).test_client()
        rotated.set_cookie(COOKIE, cookie)
        assert rotated.get("/queue").status_code == expected


# --- what docs/SECRETS.md says about the audit and receipt keys ------------------------


def test_a_new_secret_key_leaves_the_audit_log_and_its_checkpoints_verifying(
    make_app, agent, runner
):
    assert runner.invoke(args=["audit", "checkpoint"]).exit_code == 0
    rotated = make_app(secret_key=NEW, secret_key_fallbacks=OLD)
    assert reseal(rotated).exit_code == 0
    result = make_app(secret_key=NEW).test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 0 and result.output.startswith("OK "), result.output


def test_a_replaced_audit_key_fails_verify_at_the_first_older_checkpoint(svc, agent, runner):
    from pathlib import Path

    assert runner.invoke(args=["audit", "checkpoint"]).exit_code == 0
    Path(svc.settings.audit_key_file).unlink()  # the next load makes a new key
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 1
    assert "checkpoint 1 " in result.output and "was signed by another key" in result.output
