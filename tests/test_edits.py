"""Edit, then approve (PROTOCOL.md section 10): a reviewer approves edited arguments.

The edited action is scored again (deny refuses the edit, a higher level needs that
level's quorum); the resource, the callback, the audit log and the receipt say it was
edited, with the agent's digest and an RFC 6902 patch; execution reports must carry the
edited digest.
"""

from __future__ import annotations

import json

import jsonpatch
import pytest
from sqlalchemy import select

from review.audit.verify import verify_chain
from review.intake.preparation import action_digest
from review.models import Deferral, OutboxEvent
from review.reviewing.claims import claim_batch
from review.reviewing.decisions import DecisionRefused, decide
from review.reviewing.edits import edit_and_approve, preview_edit
from tests.helpers import audit_events, refund, reviewer
from tests.test_receipts import _parts

POLICY = """
[[rule]]
id = "refund"
kind = "tool"
match = ["billing.refund"]
points = 10
detail = "{tool} moves money"

[[rule]]
id = "huge_amount"
kind = "argument_over"
keys = ["amount"]
threshold = 5000
points = 70
detail = "{key} {value} > {threshold}"

[[rule]]
id = "offshore"
kind = "argument_value"
keys = ["to"]
values = ["offshore"]
points = 0
outcome = "deny"
detail = "money to {value}"
"""


@pytest.fixture
def world(make_app, make_agent, tmp_path):
    """An app with the policy above, its agent, and two reviewers (rita, sam)."""
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    app = make_app(policy_file=str(path), agent_rate=0, allow_private_callbacks=True)
    svc = app.extensions["countersign"]
    agent = make_agent(callback_url="http://127.0.0.1:9/cb", allow_private_callbacks=True).on(app)
    return app, svc, agent, reviewer(svc, "rita"), reviewer(svc, "sam")


def held(svc, agent, holder, **args) -> str:
    """A refund (the agent's claim: 40, medium) that `holder` has claimed."""
    body = refund()
    body["action"]["args"].update(args)
    d_id = agent.defer(body).get_json()["id"]
    assert claim_batch(svc, holder) == [d_id]
    return d_id


def payload(event) -> dict:
    return json.loads(event.payload)


def resource(agent, d_id) -> dict:
    return agent.get(f"/api/v1/deferrals/{d_id}").get_json()


def test_an_edited_approval_carries_the_approved_action_the_agents_digest_and_a_patch(world):
    app, svc, agent, rita, _ = world
    d_id = held(svc, agent, rita)
    asked = resource(agent, d_id)
    edited_args = {"invoice": "INV-1", "amount": 500, "note": "partial"}

    outcome = edit_and_approve(svc, rita, d_id, edited_args, reason="half of it")

    assert outcome.status == "approved", outcome.message
    d = resource(agent, d_id)
    assert d["action"] == {"tool": "billing.refund", "args": edited_args}
    assert d["action_digest"] == action_digest(d["action"]) != asked["action_digest"]
    decision = d["decision"]
    assert decision["edited"] is True
    assert decision["original_action_digest"] == asked["action_digest"]
    assert decision["decided_by"] == ["rita"] and decision["reason"] == "half of it"
    # The patch turns the agent's action into the approved one, with any RFC 6902 library.
    assert jsonpatch.apply_patch(asked["action"], decision["action_patch"]) == d["action"]
    assert sorted(op["op"] for op in decision["action_patch"]) == ["add", "replace"]
    _, claims, _ = _parts(decision["receipt"])
    assert claims["edited"] is True and claims["action_digest"] == d["action_digest"]


def test_an_unedited_approval_says_edited_false(world):
    _, svc, agent, rita, _ = world
    d_id = held(svc, agent, rita)
    decide(svc, rita, d_id, "approve")
    decision = resource(agent, d_id)["decision"]
    assert decision["edited"] is False
    assert decision["original_action_digest"] is None and decision["action_patch"] is None
    assert _parts(decision["receipt"])[1]["edited"] is False


def test_the_edit_and_the_approval_are_audited_in_one_chain_with_the_patch(world):
    _, svc, agent, rita, _ = world
    d_id = held(svc, agent, rita)
    original = resource(agent, d_id)["action_digest"]
    edit_and_approve(svc, rita, d_id, {"invoice": "INV-1", "amount": 100})

    [edited_event] = audit_events(svc, "deferral.edited", deferral_id=d_id)
    [approved_event] = audit_events(svc, "deferral.approved", deferral_id=d_id)
    assert approved_event.seq == edited_event.seq + 1 and edited_event.actor_id == "rita"
    edited, approved = payload(edited_event), payload(approved_event)
    assert edited["original_action_digest"] == original
    assert edited["action_patch"] == [{"op": "replace", "path": "/args/amount", "value": 100}]
    assert edited["evaluation"]["outcome"] == "ask"
    assert approved["edited"] is True
    assert approved["original_action_digest"] == original
    assert approved["action_patch"] == edited["action_patch"]
    assert approved["receipt"]["edited"] is True
    with svc.db.read() as session:
        assert verify_chain(session).ok


def test_the_callback_body_carries_the_edited_decision(world):
    _, svc, agent, rita, _ = world
    d_id = held(svc, agent, rita)
    edit_and_approve(svc, rita, d_id, {"invoice": "INV-1", "amount": 100})
    with svc.db.read() as session:
        [row] = session.scalars(select(OutboxEvent).where(OutboxEvent.deferral_id == d_id))
        body = json.loads(row.body)
    assert body["type"] == "deferral.decided"
    assert body["data"] == resource(agent, d_id)
    assert body["data"]["action"]["args"]["amount"] == 100
    assert body["data"]["decision"]["edited"] is True


def test_an_edit_the_policy_denies_is_refused_and_changes_nothing(world):
    _, svc, agent, rita, _ = world
    d_id = held(svc, agent, rita)
    before = resource(agent, d_id)
    with pytest.raises(DecisionRefused, match=r"policy denies the edited action.*offshore"):
        edit_and_approve(svc, rita, d_id, {"invoice": "INV-1", "amount": 1, "to": "offshore"})
    after = resource(agent, d_id)
    assert after == before and after["status"] == "in_review"
    assert audit_events(svc, "deferral.edited", deferral_id=d_id) == []


def test_an_edit_to_a_higher_level_needs_that_levels_quorum(world):
    _, svc, agent, rita, sam = world
    d_id = held(svc, agent, rita)
    assert resource(agent, d_id)["risk"]["level"] == "medium"

    first = edit_and_approve(svc, rita, d_id, {"invoice": "INV-1", "amount": 9000})

    assert first.status == "pending" and "1 of 2" in first.message
    d = resource(agent, d_id)
    assert d["status"] == "pending" and d["decision"] is None
    assert d["risk"]["level"] == "critical" and d["risk"]["score"] == 80
    assert {f["rule"] for f in d["risk"]["factors"]} == {"refund", "huge_amount"}
    assert d["action"]["args"]["amount"] == 9000
    # The editor cannot be the second approver; another reviewer approves the edited action.
    assert claim_batch(svc, rita) == []
    assert claim_batch(svc, sam) == [d_id]
    second = decide(svc, sam, d_id, "approve")
    assert second.status == "approved"
    d = resource(agent, d_id)
    assert d["decision"]["decided_by"] == ["rita", "sam"]
    assert d["decision"]["edited"] is True and d["action"]["args"]["amount"] == 9000


def test_an_edit_never_lowers_the_level_or_its_quorum(world):
    app, svc, agent, rita, sam = world
    d_id = held(svc, agent, rita, amount=9000)  # critical: two approvers
    decide(svc, rita, d_id, "approve")  # 1 of 2
    assert claim_batch(svc, sam) == [d_id]

    # sam edits it down to a small amount: rita's approval was for another action, so
    # it no longer counts, and the level (and its quorum) stays critical.
    outcome = edit_and_approve(svc, sam, d_id, {"invoice": "INV-1", "amount": 10})

    assert outcome.status == "pending"
    d = resource(agent, d_id)
    assert d["risk"]["level"] == "critical"
    [edited] = map(payload, audit_events(svc, "deferral.edited", deferral_id=d_id))
    assert edited["approvals_voided"] == ["rita"]
    assert edited["evaluation"]["level"] == "medium"
    assert claim_batch(svc, rita) == [d_id]  # rita may now approve the edited action
    assert decide(svc, rita, d_id, "approve").status == "approved"
    assert resource(agent, d_id)["decision"]["decided_by"] == ["sam", "rita"]


def test_an_execution_report_must_carry_the_edited_digest(world):
    _, svc, agent, rita, _ = world
    d_id = held(svc, agent, rita)
    asked = resource(agent, d_id)["action_digest"]
    edit_and_approve(svc, rita, d_id, {"invoice": "INV-1", "amount": 100})
    approved = resource(agent, d_id)["action_digest"]

    refused = agent.post_json(
        f"/api/v1/deferrals/{d_id}/execution", {"outcome": "succeeded", "action_digest": asked}
    )
    assert refused.status_code == 409
    message = refused.get_json()["error"]["message"]
    assert "edited" in message and approved in message
    [violation] = map(payload, audit_events(svc, "execution.violation", deferral_id=d_id))
    assert violation["rule"] == "digest_of_original"

    recorded = agent.post_json(
        f"/api/v1/deferrals/{d_id}/execution", {"outcome": "succeeded", "action_digest": approved}
    )
    assert recorded.status_code == 201, recorded.get_json()


@pytest.mark.parametrize(
    ("args", "said"),
    [
        ([1, 2], "must be a JSON object"),
        ({"invoice": "INV-1", "amount": 740}, "Nothing changed"),
        ({"n": 2**60}, "not JSON the service can sign"),
        ({"deep": json.loads("[" * 40 + "]" * 40)}, "nest deeper"),
        ({"big": "x" * 1_100_000}, "over the limit"),
    ],
)
def test_arguments_that_cannot_be_approved_are_refused_clearly(world, args, said):
    _, svc, agent, rita, _ = world
    d_id = held(svc, agent, rita)
    with pytest.raises(DecisionRefused, match=said):
        edit_and_approve(svc, rita, d_id, args)
    assert resource(agent, d_id)["status"] == "in_review"


def test_only_the_holder_may_edit(world):
    _, svc, agent, rita, sam = world
    d_id = held(svc, agent, rita)
    with pytest.raises(DecisionRefused, match="another reviewer holds it now"):
        edit_and_approve(svc, sam, d_id, {"amount": 1})


def test_a_preview_shows_the_diff_patch_and_verdict_without_writing(world):
    _, svc, agent, rita, _ = world
    d_id = held(svc, agent, rita)
    with svc.db.read() as session:
        d = session.get(Deferral, d_id)
        preview = preview_edit(svc, d, {"invoice": "INV-1", "amount": 9000})
    assert preview.diff["changes"] == [
        {"op": "changed", "path": "/amount", "old": 740, "new": 9000}
    ]
    assert preview.level == "critical" and preview.approvals_needed == 2
    assert preview.refusal is None
    assert resource(agent, d_id)["action"]["args"]["amount"] == 740


WINDOWED = """
[[rule]]
id = "refund"
kind = "tool"
match = ["billing.refund"]
points = 10
detail = "{tool} moves money"

[[rule]]
id = "principal_refunds_over_2000"
kind = "window_sum"
per = ["principal"]
sum = "amount"
over = 2000
window = 3600
points = 0
outcome = "deny"
detail = "{sum} adds up to {total} > {over} for {who} in {window}"
"""


@pytest.fixture
def windowed(make_app, make_agent, tmp_path):
    path = tmp_path / "policy.toml"
    path.write_text(WINDOWED)
    app = make_app(policy_file=str(path), agent_rate=0)
    svc = app.extensions["countersign"]
    return svc, make_agent().on(app), reviewer(svc, "rita")


def test_an_edit_is_judged_by_the_window_rules_with_its_own_amount(windowed):
    """1000 already refunded for alice this hour; the agent asks for 10, the reviewer
    edits it: to 900 (1900 in the hour) passes, to 1900 (2900) the policy denies."""
    svc, agent, rita = windowed
    earlier = refund()
    earlier["action"]["args"]["amount"] = 1000
    earlier_id = agent.defer(earlier).get_json()["id"]
    assert claim_batch(svc, rita) == [earlier_id]
    decide(svc, rita, earlier_id, "approve")
    d_id = held(svc, agent, rita, amount=10)
    with svc.db.read() as session:
        deferral = session.get(Deferral, d_id)
        assert preview_edit(svc, deferral, {"invoice": "INV-1", "amount": 900}).refusal is None
    with pytest.raises(DecisionRefused, match="policy denies the edited action"):
        edit_and_approve(svc, rita, d_id, {"invoice": "INV-1", "amount": 1900})
