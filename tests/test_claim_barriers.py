"""Claim is offered only to reviewers who may take the item (issue 15): the queue's row
and the item's page say why not instead (routed to a group they are not in, handed to
someone else, snoozed, asked on their own behalf, approved by them already), and the
server still refuses a claim posted anyway (review/reviewing/claim_barriers.py)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from review.groups import add_member, create_group
from review.models import utcnow
from review.reviewing.claims import claim_one
from review.reviewing.decisions import decide
from review.reviewing.set_aside import hand_over, snooze
from tests.helpers import logged_in, refund, reviewer


@pytest.fixture
def world(app, svc, agent):
    """rita, sam and tom review; ada is an admin; finance = {sam}."""
    people = {name: reviewer(svc, name) for name in ("rita", "sam", "tom")}
    people["ada"] = reviewer(svc, "ada", role="admin")
    with svc.db.write() as session:
        create_group(session, "finance")
        add_member(session, "finance", "sam")
    return app, svc, agent, people


def set_aside_by_rita(svc, agent, rita, summary: str, **how) -> str:
    """A deferral rita claimed, then routed to finance, handed to tom or snoozed."""
    d_id = agent.defer(refund(summary=summary)).get_json()["id"]
    claim_one(svc, rita, d_id)
    if "until" in how:
        snooze(svc, rita, d_id, how["until"], "waiting for the invoice")
    else:
        hand_over(svc, rita, d_id, **how)
    return d_id


def row_of(html: str, summary: str) -> str:
    found = re.search(r"<tr>(?:(?!</tr>).)*?" + re.escape(summary) + r".*?</tr>", html, re.S)
    assert found, f"no queue row for {summary!r}"
    return found.group(0)


def claim_button(html: str) -> bool:
    return bool(re.search(r"<button[^>]*>Claim", html))


def test_a_queue_row_says_why_not_instead_of_offering_claim(world):
    app, svc, agent, p = world
    set_aside_by_rita(svc, agent, p["rita"], "for finance", to_group="finance")
    set_aside_by_rita(svc, agent, p["rita"], "for tom", to_user="tom")
    until = utcnow() + timedelta(hours=1)
    set_aside_by_rita(svc, agent, p["rita"], "later", until=until)
    agent.defer(refund(summary="anyone's"))
    queue = logged_in(app, "rita").get("/queue").get_data(as_text=True)
    row = row_of(queue, "for finance")
    assert "Routed to group finance: you are not a member" in row and not claim_button(row)
    row = row_of(queue, "for tom")
    assert "Handed to tom" in row and not claim_button(row)
    assert claim_button(row_of(queue, "later"))  # rita snoozed it: hers to take back
    assert claim_button(row_of(queue, "anyone&#39;s"))
    queue = logged_in(app, "sam").get("/queue").get_data(as_text=True)
    assert claim_button(row_of(queue, "for finance"))  # a member
    row = row_of(queue, "later")
    assert f"Snoozed by rita until {until.strftime('%H:%M UTC')}" in row
    assert not claim_button(row)
    queue = logged_in(app, "ada").get("/queue").get_data(as_text=True)
    for summary in ("for finance", "for tom", "later"):  # an admin may take any of them
        assert claim_button(row_of(queue, summary))


def test_the_item_page_says_why_not_and_the_server_still_refuses(world):
    app, svc, agent, p = world
    d_id = set_aside_by_rita(svc, agent, p["rita"], "for finance", to_group="finance")
    tom = logged_in(app, "tom")
    page = tom.get(f"/deferrals/{d_id}").get_data(as_text=True)
    assert "Not yours to claim" in page
    assert "It is routed to the reviewer group finance: only its members" in page
    assert not claim_button(page)
    answer = tom.post(f"/deferrals/{d_id}/claim")  # posted anyway: refused as before
    assert answer.status_code == 302
    page = tom.get(f"/deferrals/{d_id}").get_data(as_text=True)
    assert "Not claimed: It is routed to the reviewer group finance" in page
    sam = logged_in(app, "sam")
    page = sam.get(f"/deferrals/{d_id}").get_data(as_text=True)
    assert claim_button(page) and "Not yours to claim" not in page


def test_a_reviewer_is_told_they_cannot_claim_what_they_asked_for(world):
    app, svc, agent, p = world
    mine = agent.defer(refund(summary="rita's own", on_behalf_of={"id": "rita"})).get_json()
    rita = logged_in(app, "rita")
    page = rita.get(f"/deferrals/{mine['id']}").get_data(as_text=True)
    assert "made on your own behalf" in page and not claim_button(page)
    row = row_of(rita.get("/queue").get_data(as_text=True), "rita&#39;s own")
    assert "Made on your behalf" in row and not claim_button(row)


def test_a_first_approver_is_told_the_next_approval_is_someone_elses(make_app, make_agent):
    app = make_app(agent_rate=0, two_person_level="low")
    svc = app.extensions["countersign"]
    agent = make_agent().on(app)
    rita, _ = reviewer(svc, "rita"), reviewer(svc, "sam")
    d_id = agent.defer(refund(summary="needs two")).get_json()["id"]
    claim_one(svc, rita, d_id)
    assert decide(svc, rita, d_id, "approve", undo_seconds=0).status == "pending"
    row = row_of(logged_in(app, "rita").get("/queue").get_data(as_text=True), "needs two")
    assert "the next approval is another reviewer" in row and not claim_button(row)
    assert claim_button(
        row_of(logged_in(app, "sam").get("/queue").get_data(as_text=True), "needs two")
    )
