"""The status read's per-process copy (review/agents/status_cache.py): served while the
listener is in step with Redis, dropped by a flip in this process at once and by a flip
in another process within IN_STEP_SECONDS, never served while the subscription is down."""

from __future__ import annotations

import json
import time

from review import redis_keys
from review.agents.killswitch import Actor, kill, revive
from review.agents.status_cache import IN_STEP_SECONDS
from tests.helpers import app_environment, run_flask, wait_for


def read_status(agent) -> dict:
    response = agent.get(f"/api/v1/agents/{agent.slug}/status")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def copy_taken(svc, agent) -> str:
    """Poll until this process serves the status from its own copy; that copy."""

    def taken():
        read_status(agent)
        return svc.statuses.get(agent.slug)

    return wait_for(taken, timeout=5, message="the status cache never kept a copy")


def first_read_showing(agent, shows, since: float) -> dict:
    """Read the status until `shows(status)`; that status. Whatever a loaded machine does to
    a read's latency, the bound is on when a read begins: one begun IN_STEP_SECONDS after
    `since` (the change, or a moment after it) must not be served the old copy."""
    while True:
        began = time.monotonic()
        status = read_status(agent)
        if shows(status):
            return status
        assert began - since < IN_STEP_SECONDS, (
            f"a read begun {began - since:.2f} s after the change was served the old copy"
        )
        time.sleep(0.01)


def rewrite_in_redis_only(redis_client, slug: str, **changes) -> dict:
    """Change the status in Redis without telling anyone (as a flip whose message is missed)."""
    status = {**json.loads(redis_client.get(redis_keys.agent_status(slug))), **changes}
    redis_client.set(redis_keys.agent_status(slug), json.dumps(status), ex=60)
    return status


def test_it_serves_polls_from_its_copy_without_asking_redis(agent, svc, redis_client):
    copy = copy_taken(svc, agent)
    rewrite_in_redis_only(redis_client, agent.slug, reason="only in redis")
    assert read_status(agent) == json.loads(copy)  # the copy answered, not Redis


def test_a_kill_in_this_process_is_answered_at_once(agent, svc):
    copy_taken(svc, agent)
    kill(svc, agent.slug, Actor("user", "olivia"), "runaway")
    assert read_status(agent)["state"] == "killed"
    revive(svc, agent.slug, Actor("user", "olivia"), "fixed")
    assert read_status(agent)["state"] == "active"


def test_a_kill_from_another_process_reaches_the_copy(agent, svc, settings_overrides, redis_client):
    copy_taken(svc, agent)
    done = run_flask(
        *("agents", "kill", agent.slug, "--by", "olivia", "--reason", "from the cli"),
        env=app_environment(settings_overrides),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    killed_at = time.monotonic()
    status = first_read_showing(agent, lambda s: s["state"] == "killed", since=killed_at)
    assert status["reason"] == "from the cli"


def test_a_second_app_on_the_same_redis_drops_its_copy_on_a_kill(
    make_app, agent, svc, redis_client
):
    other = make_app()
    other_svc = other.extensions["countersign"]
    other_agent = type(agent)(other.test_client(), agent.slug, agent.secret)
    copy_taken(other_svc, other_agent)
    kill(svc, agent.slug, Actor("user", "olivia"), "seen elsewhere")
    first_read_showing(other_agent, lambda s: s["state"] == "killed", since=time.monotonic())


def our_subscriptions(redis_client) -> list[dict]:
    """This test's pub/sub connections (others share the server, on other databases)."""
    db = redis_client.connection_pool.connection_kwargs.get("db", 0)
    return [c for c in redis_client.client_list(_type="pubsub") if int(c["db"]) == db]


def test_a_dropped_subscription_sends_reads_to_redis(agent, svc, redis_client):
    copy_taken(svc, agent)
    for connection in our_subscriptions(redis_client):
        redis_client.client_kill_filter(_id=connection["id"])
    changed = rewrite_in_redis_only(redis_client, agent.slug, reason="missed message")
    # Unheard while the subscription was down: the copy must go within the in-step bound.
    first_read_showing(agent, lambda s: s == changed, since=time.monotonic())
    assert svc.statuses.get(agent.slug) in (None, json.dumps(changed))


def test_a_read_that_began_before_a_flip_is_not_kept(agent, svc):
    copy_taken(svc, agent)
    before = svc.statuses.generation()
    svc.statuses.forget(agent.slug)  # a flip lands while the read is under way
    svc.statuses.keep(agent.slug, '{"state": "stale"}', before)
    assert svc.statuses.get(agent.slug) is None
    assert read_status(agent)["state"] == "active"


def test_copies_are_not_served_while_the_listener_is_out_of_step(redis_url):
    import redis as redis_py

    from review.agents.status_cache import StatusCache

    unreachable = StatusCache(lambda: redis_py.Redis.from_url("redis://127.0.0.1:1/0"))
    try:
        generation = unreachable.generation()
        unreachable.keep("billing-bot", '{"state": "active"}', generation)
        assert unreachable.get("billing-bot") is None
        time.sleep(0.3)
        assert not unreachable.in_step()
        assert unreachable.get("billing-bot") is None
    finally:
        unreachable.close()
