"""Each process's cached signers (SecretCache, review/agents/registry.py) on the real Redis:
a rotation, a deactivation or a new breaker override in one app instance drops the signer
in another at once (the status cache's channel, review/agents/status_cache.py), so a
revoked secret is refused there on its next request; the previous secret keeps its
COUNTERSIGN_SECRET_OVERLAP (PROTOCOL.md 12, docs/SECRETS.md); while the listener is out
of step a signer is kept SecretCache.TTL_SECONDS at most, as before the messages."""

from __future__ import annotations

import time

import pytest

from review.agents import killswitch
from review.agents.administration import change_agent, rotate_agent_secret
from review.agents.registry import SecretCache
from review.agents.status_cache import IN_STEP_SECONDS, StatusCache
from tests.helpers import AgentClient, wait_for


def read_status(agent: AgentClient):
    return agent.get(f"/api/v1/agents/{agent.slug}/status")


@pytest.fixture
def other(make_app):
    """A second app instance (another web process) on the same database and Redis."""

    def on(secret_overlap: int):
        app = make_app(secret_overlap=secret_overlap)
        return app, app.extensions["countersign"]

    return on


def cached_and_in_step(svc, agent: AgentClient) -> None:
    """`agent`'s signer is cached in `svc`'s process, whose listener is in step."""
    assert read_status(agent).status_code == 200
    wait_for(svc.statuses.in_step, timeout=5, message="the listener never got in step")
    assert read_status(agent).status_code == 200  # cached again after the first PONG
    assert svc.secrets.cached(agent.slug) is not None


def dropped_within_a_message(svc, slug: str) -> float:
    """Seconds until `svc`'s process dropped the agent's signer (a pub/sub message's time)."""
    started = time.monotonic()
    wait_for(
        lambda: svc.secrets.cached(slug) is None,
        timeout=IN_STEP_SECONDS,
        interval=0.001,
        message="the other process kept the signer after the change",
    )
    return time.monotonic() - started


def test_a_secret_rotated_without_overlap_in_one_app_is_refused_by_another_at_once(other, agent):
    writer_app, writer = other(secret_overlap=0)
    reader_app, reader = other(secret_overlap=0)
    old = agent.on(reader_app)
    cached_and_in_step(reader, old)

    _, secret = rotate_agent_secret(writer, agent.slug, ("user", "olivia"))
    dropped_within_a_message(reader, agent.slug)
    assert read_status(old).status_code == 401  # its next request
    new = AgentClient(reader_app.test_client(), agent.slug, secret)
    assert read_status(new).status_code == 200
    assert read_status(AgentClient(writer_app.test_client(), agent.slug, secret)).status_code == 200


def test_the_previous_secret_keeps_its_overlap_in_every_app(other, agent):
    writer_app, writer = other(secret_overlap=3600)
    reader_app, reader = other(secret_overlap=3600)
    old = agent.on(reader_app)
    cached_and_in_step(reader, old)

    _, secret = rotate_agent_secret(writer, agent.slug, ("user", "olivia"))
    dropped_within_a_message(reader, agent.slug)
    assert read_status(old).status_code == 200  # PROTOCOL.md: the previous one keeps working
    assert read_status(AgentClient(reader_app.test_client(), agent.slug, secret)).status_code == 200
    signer = reader.secrets.cached(agent.slug)
    assert len(signer.secrets) == 2
    assert signer.secrets[0][2] is not None  # the old row now carries its end of overlap


def test_a_deactivation_in_one_app_is_refused_by_another_at_once(other, agent):
    _, writer = other(secret_overlap=0)
    reader_app, reader = other(secret_overlap=0)
    old = agent.on(reader_app)
    cached_and_in_step(reader, old)

    killswitch.deactivate(writer, agent.slug, killswitch.Actor("user", "olivia"), "retired")
    dropped_within_a_message(reader, agent.slug)
    assert read_status(old).status_code == 401


def test_a_new_breaker_override_reaches_the_other_apps_signer(other, agent):
    _, writer = other(secret_overlap=0)
    reader_app, reader = other(secret_overlap=0)
    cached_and_in_step(reader, agent.on(reader_app))

    change_agent(
        writer,
        agent.slug,
        actor=("user", "olivia"),
        name=agent.slug,
        owners=["olivia"],
        callback_url=None,
        trace_url_template=None,
        breaker_flood="5/60",
        breaker_rejections=None,
    )
    dropped_within_a_message(reader, agent.slug)
    assert read_status(agent.on(reader_app)).status_code == 200
    assert reader.secrets.cached(agent.slug).breaker_flood == "5/60"


def test_a_read_that_began_before_a_change_is_not_kept(svc, agent):
    cached_and_in_step(svc, agent)
    svc.secrets.forget(agent.slug)

    class ChangedDuringTheRead:
        """A session whose read lands while another process's change is announced."""

        def __init__(self, session):
            self.session = session

        def execute(self, query):
            rows = list(self.session.execute(query))
            svc.secrets.forget(agent.slug)
            return rows

    with svc.db.read() as session:
        assert svc.secrets.signer(ChangedDuringTheRead(session), agent.slug) is not None
    assert svc.secrets.cached(agent.slug) is None


def test_without_redis_a_signer_is_kept_for_the_ttl_only(svc, agent, monkeypatch):
    import redis as redis_py

    unreachable = StatusCache(lambda: redis_py.Redis.from_url("redis://127.0.0.1:1/0"))
    cache = SecretCache(svc.box, listener=unreachable)
    monkeypatch.setattr(SecretCache, "TTL_SECONDS", 2.0)
    try:
        time.sleep(0.3)  # the listener has tried and failed
        with svc.db.read() as session:
            assert cache.signer(session, agent.slug) is not None
        read_at = time.monotonic()
        time.sleep(0.8)  # the listener retries every 0.5 s: a failed retry forgets nothing
        assert not unreachable.in_step()
        assert cache.cached(agent.slug) is not None  # the short TTL, as before the messages
        time.sleep(max(0.0, read_at + 2.0 - time.monotonic()))
        assert cache.cached(agent.slug) is None
    finally:
        unreachable.close()
