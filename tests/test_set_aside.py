"""Snooze and hand over (issue 16): the holder puts a deferral back "not before T" with a
reason, or hands it to a named reviewer or a reviewer group; both audited in the same
transaction, both visible on the card, the queue row and the resource."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from review.groups import add_member, create_group
from review.models import utcnow
from review.reviewing.claims import NotTakeable, claim_batch, claim_one, release_batch
from review.reviewing.decisions import DecisionRefused, decide
from review.reviewing.set_aside import hand_over, snooze
from tests.helpers import audit_events, logged_in, refund, reviewer


@pytest.fixture
def world(app, svc, agent):
    """rita, sam and tom review; ada is an admin; finance = {sam}."""
    people = {name: reviewer(svc, name) for name in ("rita", "sam", "tom")}
    people["ada"] = reviewer(svc, "ada", role="admin")
    with svc.db.write() as session:
        create_group(session, "finance")
        add_member(session, "finance", "sam")
    return app, svc, agent, people


def held_by(svc, agent, holder, **changes) -> str:
    d_id = agent.defer(refund(**changes)).get_json()["id"]
    claim_one(svc, holder, d_id)
    return d_id


def resource(agent, d_id) -> dict:
    return agent.get(f"/api/v1/deferrals/{d_id}").get_json()


def test_a_snoozed_item_is_offered_to_nobody_until_its_time(world):
    _, svc, agent, p = world
    d_id = held_by(svc, agent, p["rita"])
    now = utcnow()
    until = now + timedelta(hours=1)
    done = snooze(svc, p["rita"], d_id, until, "waiting for the customer's reply", now=now)
    assert done.status == "pending" and done.message.startswith("Snoozed until")
    shown = resource(agent, d_id)
    assert shown["status"] == "pending"
    assert shown["route"]["not_before"] == until.strftime("%Y-%m-%dT%H:%M:%SZ")
    # Nobody's batch, not even the snoozer's; others may not claim it before then.
    assert claim_batch(svc, p["sam"], now=now) == []
    assert claim_batch(svc, p["rita"], now=now) == []
    with pytest.raises(NotTakeable, match="rita snoozed it until"):
        claim_one(svc, p["sam"], d_id, now=now)
    claim_one(svc, p["rita"], d_id, now=now)  # the snoozer may take it back
    release_batch(svc, p["rita"], now=now)
    claim_one(svc, p["ada"], d_id, now=now)  # and an admin
    release_batch(svc, p["ada"], now=now)
    # After its time, anyone's batch.
    later = until + timedelta(seconds=1)
    assert claim_batch(svc, p["sam"], now=later) == [d_id]
    [event] = audit_events(svc, "deferral.snoozed", deferral_id=d_id)
    assert event.actor_id == "rita"
    assert json.loads(event.payload) == {
        "until": until.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "reason": "waiting for the customer's reply",
    }


def test_a_snooze_needs_a_reason_a_later_time_and_one_before_expiry(world):
    _, svc, agent, p = world
    d_id = held_by(svc, agent, p["rita"], expires_in=3600)
    now = utcnow()
    with pytest.raises(DecisionRefused, match="Say why you snooze it"):
        snooze(svc, p["rita"], d_id, now + timedelta(minutes=5), "  ", now=now)
    with pytest.raises(DecisionRefused, match="at least a minute from now"):
        snooze(svc, p["rita"], d_id, now, "later", now=now)
    with pytest.raises(DecisionRefused, match="snooze it until before then, or decide it now"):
        snooze(svc, p["rita"], d_id, now + timedelta(hours=2), "later", now=now)
    with pytest.raises(DecisionRefused, match="another reviewer holds it now"):
        snooze(svc, p["sam"], d_id, now + timedelta(minutes=5), "not mine", now=now)
    assert resource(agent, d_id)["status"] == "in_review"  # nothing changed
    assert audit_events(svc, "deferral.snoozed") == []


def test_an_item_handed_to_a_reviewer_is_theirs_alone_and_first_in_their_batch(world):
    _, svc, agent, p = world
    other = agent.defer(refund(summary="more urgent", risk={"score": 70})).get_json()["id"]
    d_id = held_by(svc, agent, p["rita"])
    done = hand_over(svc, p["rita"], d_id, to_user="tom", note="you know this customer")
    assert done.message == "Handed to tom: only they (and admins) may claim it now."
    assert resource(agent, d_id)["route"]["handed_to"] == "tom"
    with pytest.raises(NotTakeable, match="It was handed to tom"):
        claim_one(svc, p["sam"], d_id)
    assert claim_batch(svc, p["sam"]) == [other]  # sam's batch has only the other
    release_batch(svc, p["sam"])
    assert claim_batch(svc, p["tom"])[0] == d_id  # first, though less urgent
    decided = decide(svc, p["tom"], d_id, "approve")
    assert decided.status == "approved"
    [event] = audit_events(svc, "deferral.handed_over", deferral_id=d_id)
    assert json.loads(event.payload) == {
        "to_user": "tom",
        "to_group": None,
        "previous_group": None,
        "note": "you know this customer",
    }


def test_a_hand_over_to_a_group_re_routes_it(world):
    _, svc, agent, p = world
    d_id = held_by(svc, agent, p["rita"])
    hand_over(svc, p["rita"], d_id, to_group="finance")
    assert resource(agent, d_id)["route"]["group"] == "finance"
    with pytest.raises(NotTakeable, match="routed to the reviewer group finance"):
        claim_one(svc, p["tom"], d_id)
    assert claim_batch(svc, p["sam"]) == [d_id]


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"to_user": "nobody"}, "There is no active reviewer 'nobody'"),
        ({"to_user": "rita"}, "You hold it already"),
        ({"to_user": "alice"}, "It was asked on alice's behalf"),
        ({"to_group": "nobody"}, "There is no reviewer group 'nobody'"),
        ({}, "Hand it to one reviewer or to one group"),
        ({"to_user": "tom", "to_group": "finance"}, "Hand it to one reviewer or to one group"),
    ],
)
def test_a_hand_over_names_someone_who_can_decide_it(world, kwargs, why):
    _, svc, agent, p = world
    reviewer(svc, "alice")  # the principal of refund() is alice@example.com
    d_id = held_by(svc, agent, p["rita"], on_behalf_of={"id": "alice"})
    with pytest.raises(DecisionRefused, match=why):
        hand_over(svc, p["rita"], d_id, **kwargs)
    assert resource(agent, d_id)["status"] == "in_review"


def test_a_routed_item_goes_only_to_a_member_of_its_group(make_app, make_agent, tmp_path):
    path = tmp_path / "policy.toml"
    path.write_text(
        '[[rule]]\nid = "money"\nkind = "tool"\nmatch = ["billing.*"]\npoints = 0\n'
        'group = "finance"\ndetail = "money"\n'
    )
    app = make_app(policy_file=str(path), agent_rate=0)
    svc = app.extensions["countersign"]
    agent = make_agent().on(app)
    sam, tom, una = (reviewer(svc, n) for n in ("sam", "tom", "una"))
    with svc.db.write() as session:
        create_group(session, "finance")
        add_member(session, "finance", "sam")
        add_member(session, "finance", "una")
    d_id = agent.defer(refund()).get_json()["id"]
    claim_one(svc, sam, d_id)
    with pytest.raises(DecisionRefused, match="tom is not in the reviewer group finance"):
        hand_over(svc, sam, d_id, to_user="tom")
    hand_over(svc, sam, d_id, to_user="una")
    assert claim_batch(svc, una) == [d_id]


def test_the_card_and_the_queue_row_show_a_snooze_and_a_hand_over(world):
    app, svc, agent, p = world
    snoozed = held_by(svc, agent, p["rita"], summary="snoozed one")
    snooze(svc, p["rita"], snoozed, utcnow() + timedelta(hours=1), "ask billing first")
    handed = held_by(svc, agent, p["rita"], summary="handed one")
    hand_over(svc, p["rita"], handed, to_user="tom", note="your customer")
    tom = logged_in(app, "tom")
    queue = tom.get("/queue").get_data(as_text=True)
    assert "snoozed until" in queue and "for tom" in queue
    assert queue.index("handed one") < queue.index("snoozed one")  # his first
    card = tom.get(f"/deferrals/{snoozed}").get_data(as_text=True)
    assert "by rita: ask billing first" in card
    card = tom.get(f"/deferrals/{handed}").get_data(as_text=True)
    assert "handed to tom by rita: your customer" in card


def test_the_card_snoozes_and_hands_over_through_its_forms(world):
    app, svc, agent, p = world
    d_id = agent.defer(refund()).get_json()["id"]
    rita = logged_in(app, "rita")
    rita.post("/batch/start")
    page = rita.get("/batch").get_data(as_text=True)
    assert "Snooze or hand over" in page and 'value="user:tom"' not in page  # fetched on open
    assert f'hx-get="/batch/{d_id}/set-aside"' in page
    panel = rita.client.get(f"/batch/{d_id}/set-aside", headers={"HX-Request": "true"})
    assert 'aria-label="Snooze"' in panel.get_data(as_text=True)
    assert 'value="user:tom"' in panel.get_data(as_text=True)
    no_js = rita.get(f"/batch/{d_id}/set-aside")  # the item page has the forms
    assert no_js.status_code == 302 and no_js.headers["Location"] == f"/deferrals/{d_id}"
    item = rita.get(f"/deferrals/{d_id}").get_data(as_text=True)
    assert 'aria-label="Snooze"' in item and 'value="user:tom"' in item
    answer = rita.post(
        f"/batch/{d_id}/snooze", {"minutes": "60", "reason": "after lunch"}, htmx=True
    ).get_data(as_text=True)
    assert "Snoozed until" in answer
    assert resource(agent, d_id)["route"]["not_before"] is not None
    refused = rita.post(f"/batch/{d_id}/snooze", {"minutes": "7"}, htmx=True)
    assert "Pick how long to snooze it." in refused.get_data(as_text=True)
    claim_one(svc, p["rita"], d_id)
    answer = rita.post(
        f"/batch/{d_id}/hand-over", {"to": "user:tom", "note": "yours"}, htmx=True
    ).get_data(as_text=True)
    assert "Handed to tom" in answer
    assert resource(agent, d_id)["route"]["handed_to"] == "tom"
