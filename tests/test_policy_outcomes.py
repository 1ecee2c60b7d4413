"""Policy outcomes (PROTOCOL.md section 10): a rule allows or denies a deferral at intake.

A decision by policy is made in intake's one transaction: the deferral is stored
decided, `received`, `evaluated` and the decision are chained together, and its
callback commits with it and goes out through the worker like any decision. Deny beats
ask beats allow; a high score, a truncated diff, or a level that needs two people is
never allowed automatically; the kill switch and the pending cap refuse first.
"""

import base64
import json
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from review import redis_keys
from review.agents.killswitch import Actor, kill
from review.audit.verify import verify_chain
from review.errors import DomainError
from review.models import Agent, OutboxEvent
from review.users import create_user
from tests.helpers import audit_events, refund

POLICY = """
[[rule]]
id = "read_only"
kind = "tool"
match = ["*.get", "*.list"]
points = 0
outcome = "allow"
detail = "{tool} only reads"

[[rule]]
id = "no_public_acl"
kind = "argument_value"
keys = ["acl"]
values = ["public-read"]
points = 10
outcome = "deny"
detail = "{key} {value}"

[[rule]]
id = "ask_when_labelled"
kind = "label"
key = "review"
values = ["yes"]
points = 0
outcome = "ask"
detail = "label {key}={value}"

[[rule]]
id = "big_amount"
kind = "argument_over"
keys = ["amount"]
threshold = 100
points = 60
detail = "{key} {value} > {threshold}"
"""


def read(**args):
    """A deferral of a read-only tool (the policy allows it), with these arguments."""
    return refund(action={"tool": "files.get", "args": {"path": "/a", **args}})


@pytest.fixture
def policy_file(tmp_path):
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    return str(path)


@pytest.fixture
def deciding(make_app, make_agent, policy_file):
    """Factory: an app with the deciding policy (and `overrides`), and its agent."""

    def build(slug="billing-bot", **overrides):
        app = make_app(policy_file=policy_file, agent_rate=0, **overrides)
        return app.extensions["countersign"], make_agent(slug).on(app)

    return build


def decided_at_intake(response, status):
    assert response.status_code == 202, response.get_json()
    d = response.get_json()
    assert d["status"] == status and d["decision"]["outcome"] == status
    assert d["decision"]["decided_by"] == ["policy"]
    return d


def undecided(svc, slug="billing-bot"):
    with svc.db.read() as session:
        return session.scalar(select(Agent.undecided).where(Agent.slug == slug))


def seconds(rfc3339):
    return datetime.strptime(rfc3339, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def unb64(part):
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def test_an_allowed_deferral_is_approved_at_intake_with_its_rule_and_receipt(deciding):
    svc, agent = deciding()
    d = decided_at_intake(agent.defer(read()), "approved")
    assert d["risk"]["outcome"] == "allow" and d["risk"]["rule"] == "read_only"
    assert d["decision"]["reason"] == "policy rule read_only: files.get only reads"
    ttl = svc.settings.approval_ttl
    assert seconds(d["decision"]["valid_until"]) - seconds(d["decision"]["decided_at"]) == ttl
    assert d["execution"] is None
    # The receipt a reviewer's approval carries, signed by the service's key.
    header, claims, signature = d["decision"]["receipt"].split(".")
    assert json.loads(unb64(claims))["approvers"] == ["policy"]
    assert json.loads(unb64(claims))["sub"] == d["id"]
    [key] = [k for k in agent.get("/.well-known/jwks.json").get_json()["keys"]]
    Ed25519PublicKey.from_public_bytes(unb64(key["x"])).verify(
        unb64(signature), f"{header}.{claims}".encode()
    )
    assert agent.get(f"/api/v1/deferrals/{d['id']}").get_json() == d
    assert undecided(svc) == 0  # an approved insert is not counted as undecided


def test_the_decision_is_chained_after_received_and_evaluated_in_one_go(deciding):
    svc, agent = deciding()
    d = decided_at_intake(agent.defer(read()), "approved")
    events = audit_events(svc, deferral_id=d["id"])
    assert [e.event_type for e in events] == [
        "deferral.received",
        "deferral.evaluated",
        "deferral.approved",
    ]
    assert [e.seq for e in events] == [events[0].seq + i for i in range(3)]
    evaluated, decision = json.loads(events[1].payload), json.loads(events[2].payload)
    assert evaluated["outcome"] == "allow" and evaluated["rule"] == "read_only"
    assert (events[2].actor_kind, events[2].actor_id) == ("system", "policy")
    assert decision["rule"] == "read_only" and decision["decided_by"] == ["policy"]
    assert decision["policy_version"] == d["risk"]["policy_version"] == svc.policy.version
    assert decision["valid_until"] == d["decision"]["valid_until"]
    assert decision["receipt"]["sub"] == d["id"]
    with svc.db.read() as session:
        assert verify_chain(session).ok


def test_a_denied_deferral_answers_202_rejected_naming_the_rule(deciding):
    svc, agent = deciding()
    d = decided_at_intake(
        agent.defer(refund(action={"tool": "s3.put", "args": {"acl": "public-read"}})), "rejected"
    )
    assert d["risk"]["outcome"] == "deny" and d["risk"]["rule"] == "no_public_acl"
    assert d["decision"]["reason"] == "policy rule no_public_acl: acl public-read"
    assert d["decision"]["valid_until"] is None and d["decision"]["receipt"] is None
    [event] = audit_events(svc, "deferral.rejected", deferral_id=d["id"])
    assert event.actor_id == "policy"
    assert undecided(svc) == 0


def test_deny_beats_allow_and_ask_beats_allow(deciding):
    _svc, agent = deciding()
    denied = decided_at_intake(agent.defer(read(acl="public-read")), "rejected")
    assert denied["risk"]["rule"] == "no_public_acl"
    asked = agent.defer(read() | {"labels": {"review": "yes"}}).get_json()
    assert asked["status"] == "pending" and asked["decision"] is None
    assert asked["risk"]["outcome"] == "ask" and asked["risk"]["rule"] == "ask_when_labelled"


def test_a_high_score_is_never_allowed_automatically(deciding):
    svc, agent = deciding()
    d = agent.defer(read(amount=500)).get_json()
    assert d["risk"]["level"] == "high" and d["status"] == "pending"
    assert d["risk"]["outcome"] == "ask" and d["risk"]["rule"] is None
    withheld = [f for f in d["risk"]["factors"] if f["rule"] == "auto_allow_withheld"]
    assert withheld == [
        {
            "rule": "auto_allow_withheld",
            "points": 0,
            "detail": "read_only allows it, but a high score is never allowed automatically",
        }
    ]
    # The agent's own claim counts too: it can make an item stricter, never laxer.
    claimed = agent.defer(read() | {"risk": {"score": 80}}).get_json()
    assert claimed["risk"]["level"] == "critical" and claimed["status"] == "pending"
    assert undecided(svc) == 2


def test_the_ceiling_is_a_setting_and_stays_below_the_two_person_level(deciding):
    _svc, agent = deciding(auto_allow_max_level="high", two_person_level="critical")
    decided_at_intake(agent.defer(read(amount=500)), "approved")
    _svc, agent = deciding("bot-2", auto_allow_max_level="critical", two_person_level="high")
    assert agent.defer(read(amount=500)).get_json()["status"] == "pending"
    _svc, agent = deciding("bot-3", auto_allow_max_level="none")
    assert agent.defer(read()).get_json()["status"] == "pending"


def test_a_truncated_diff_is_never_allowed(deciding):
    _svc, agent = deciding(diff_max_changes=2)
    body = read() | {"before": {"a": 1, "b": 1, "c": 1}, "after": {"a": 2, "b": 2, "c": 2}}
    d = agent.defer(body).get_json()
    assert d["diff"]["truncated"] and d["status"] == "pending"
    assert "the diff was truncated" in d["risk"]["factors"][-1]["detail"]


def test_the_kill_switch_and_the_pending_cap_refuse_before_policy(deciding):
    svc, agent = deciding(agent_max_pending=1)
    assert agent.defer(refund()).get_json()["status"] == "pending"
    capped = agent.defer(read())
    assert capped.status_code == 429 and capped.get_json()["error"]["code"] == "rate_limited"
    kill(svc, agent.slug, Actor("user", "olivia"), "stop")
    refused = agent.defer(read())
    assert refused.status_code == 423 and refused.get_json()["error"]["code"] == "agent_killed"
    assert audit_events(svc, "deferral.approved") == []


def test_a_retry_of_a_decided_deferral_answers_200_with_it(deciding):
    _svc, agent = deciding()
    first = agent.defer(read(), msg_id="msg_policy_retry")
    again = agent.defer(read(), msg_id="msg_policy_retry")
    assert again.status_code == 200 and again.get_json() == first.get_json()


def test_without_a_callback_url_no_outbox_row_is_written(deciding):
    svc, agent = deciding()
    decided_at_intake(agent.defer(read()), "approved")
    with svc.db.read() as session:
        assert session.scalars(select(OutboxEvent)).all() == []


@pytest.mark.parametrize(
    "body,status",
    [(read(), "approved"), (read(acl="public-read"), "rejected")],
    ids=["allowed", "denied"],
)
def test_the_callback_of_a_policy_decision_reaches_the_agent(
    callback_world, policy_file, redis_client, body, status
):
    world = callback_world(policy_file=policy_file)
    d = decided_at_intake(world.agent.defer(body), status)
    # Queued for delivery at once, after the commit (not left to the worker's tick).
    assert redis_client.exists(redis_keys.DELIVERY_FLUSH_QUEUED)
    with world.svc.db.read() as session:
        [row] = session.scalars(select(OutboxEvent)).all()
    assert row.deferral_id == d["id"] and row.event_type == "deferral.decided"
    world.work_until(lambda: len(world.receiver.requests) == 1)
    [(headers, raw, _path)] = world.receiver.requests
    payload = Webhook(world.agent.secret).verify(raw, {k.lower(): v for k, v in headers.items()})
    assert payload["type"] == "deferral.decided" and payload["data"] == d
    assert payload["data"]["decision"]["decided_by"] == ["policy"]
    assert payload["data"]["status"] == status


def test_an_ask_outcome_shows_in_the_resource_with_no_rule(agent):
    # Not money: the default policy asks about money for an unverified principal by a rule.
    d = agent.defer(refund(action={"tool": "notes.add", "args": {"text": "hi"}})).get_json()
    assert d["risk"]["outcome"] == "ask" and d["risk"]["rule"] is None


@pytest.mark.parametrize("name", ["policy", "Policy", "POLICY", "po1icy"])
def test_no_user_may_be_named_policy(svc, name):
    with svc.db.write() as session, pytest.raises(DomainError, match="reserved"):
        create_user(session, name, "reviewer", "correct horse battery")
