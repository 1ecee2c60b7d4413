"""Routing and quorums (PROTOCOL.md section 10): a policy rule routes a deferral to a
reviewer group, whose members (and admins) alone may claim it, and asks for a number of
distinct approvers; the resource's `route` says so."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from review.audit.verify import verify_chain
from review.groups import add_member, create_group
from review.intake.policy_loading import PolicyError, load_policy
from review.intake.policy_routes import Route, choose_route, required_approvals
from review.models import Approval
from review.reviewing.claims import NotTakeable, claim_batch, claim_one
from review.reviewing.decisions import DecisionRefused, decide
from review.reviewing.edits import edit_and_approve
from tests.helpers import audit_events, filled_row, refund, reviewer

POLICY = """
[[rule]]
id = "refund"
kind = "tool"
match = ["billing.refund"]
points = 10
group = "finance"
detail = "{tool} moves money"

[[rule]]
id = "big_refund"
kind = "argument_over"
keys = ["amount"]
threshold = 1000
points = 10
quorum = 3
detail = "{key} {value} > {threshold}"

[[rule]]
id = "audited"
kind = "label"
key = "audit"
values = ["yes"]
points = 0
group = "audit"
quorum = 2
detail = "labelled for audit"

[[rule]]
id = "ghost"
kind = "label"
key = "team"
values = ["ghosts"]
points = 0
group = "nobody-made-this"
detail = "routed to a group nobody made"
"""


@pytest.fixture
def world(make_app, make_agent, tmp_path):
    """An app with the policy above, its agent; finance = {fred, fay, flo}; rita outside;
    ada an admin."""
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    app = make_app(policy_file=str(path), agent_rate=0, allow_private_callbacks=True)
    svc = app.extensions["countersign"]
    agent = make_agent(callback_url="http://127.0.0.1:9/cb", allow_private_callbacks=True).on(app)
    people = {name: reviewer(svc, name) for name in ("fred", "fay", "flo", "rita")}
    people["ada"] = reviewer(svc, "ada", role="admin")
    with svc.db.write() as session:
        create_group(session, "finance")
        create_group(session, "audit")
        for name in ("fred", "fay", "flo"):
            add_member(session, "finance", name)
    return svc, agent, people, app


def defer(agent, amount=740, **changes) -> dict:
    body = refund(**changes)
    body["action"]["args"]["amount"] = amount
    response = agent.defer(body)
    assert response.status_code == 202, response.get_json()
    return response.get_json()


def route(group, required, approvals, handed_to=None, not_before=None) -> dict:
    return {
        "group": group,
        "required_approvals": required,
        "approvals": approvals,
        "handed_to": handed_to,
        "not_before": not_before,
    }


def test_a_rule_may_route_to_a_group_and_ask_for_a_quorum(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(POLICY)
    rules = {r.id: r for r in load_policy(path, (25, 50, 75)).rules}
    assert (rules["refund"].group, rules["refund"].quorum) == ("finance", None)
    assert (rules["big_refund"].group, rules["big_refund"].quorum) == (None, 3)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("quorum = 0", "quorum must be a whole number of approvers from 1 to 10"),
        ("quorum = 11", "quorum must be a whole number of approvers from 1 to 10"),
        ('quorum = "2"', "quorum must be a whole number"),
        ('group = " finance"', "group must be a reviewer group's name"),
        ("group = 7", "group must be a reviewer group's name"),
    ],
)
def test_a_bad_group_or_quorum_is_refused_with_its_line(tmp_path, line, reason):
    path = tmp_path / "p.toml"
    path.write_text(
        f'[[rule]]\nid = "r"\nkind = "tool"\nmatch = ["*"]\npoints = 1\ndetail = "d"\n{line}\n'
    )
    with pytest.raises(PolicyError, match=reason) as refused:
        load_policy(path, (25, 50, 75))
    assert refused.value.line == 7


def test_the_most_restrictive_route_wins():
    class R:
        def __init__(self, id, group=None, quorum=None):
            self.id, self.group, self.quorum = id, group, quorum

    # The highest quorum; the group of the rule asking the most (ties: the first).
    assert choose_route([R("a", "finance"), R("b", None, 3)]) == Route("finance", 3, "a")
    assert choose_route([R("a", "finance", 2), R("b", "audit", 3)]) == Route("audit", 3, "b")
    assert choose_route([R("a", "finance", 2), R("b", "audit", 2)]) == Route("finance", 2, "a")
    assert choose_route([]) == Route(None, None, None)
    # Never below the level's own quorum (COUNTERSIGN_TWO_PERSON_LEVEL).
    assert required_approvals("critical", "critical", Route(None, None)) == 2
    assert required_approvals("critical", "critical", Route(None, 3)) == 3
    assert required_approvals("none", "critical", Route(None, None)) == 1


def test_the_resource_says_which_group_and_how_many_approvers(world):
    _, agent, _, _ = world
    small = defer(agent)
    assert small["route"] == route("finance", 1, [])
    big = defer(agent, amount=5000)
    assert big["route"] == route("finance", 3, [])
    audited = defer(agent, labels={"audit": "yes"})
    # finance (no quorum: counts as 1) loses to audit's quorum of 2.
    assert audited["route"] == route("audit", 2, [])
    fetched = agent.get(f"/api/v1/deferrals/{big['id']}").get_json()
    assert fetched["route"] == big["route"]


def test_only_members_and_admins_may_claim_a_routed_deferral(world):
    svc, agent, people, _ = world
    d_id = defer(agent)["id"]
    with pytest.raises(NotTakeable, match="routed to the reviewer group finance"):
        claim_one(svc, people["rita"], d_id)
    assert claim_batch(svc, people["rita"]) == []
    assert claim_batch(svc, people["fred"]) == [d_id]
    other = defer(agent)["id"]
    claim_one(svc, people["ada"], other)  # an admin may claim anything
    assert decide(svc, people["ada"], other, "approve").status == "approved"


def test_three_distinct_approvers_decide_a_quorum_of_three(world):
    svc, agent, people, _ = world
    d_id = defer(agent, amount=5000)["id"]
    fred, fay, flo = people["fred"], people["fay"], people["flo"]
    assert claim_batch(svc, fred) == [d_id]
    first = decide(svc, fred, d_id, "approve")
    assert first.status == "pending"
    assert first.message.startswith(
        "1 of 3 approvals: it goes back to the queue for another reviewer."
    )
    shown = agent.get(f"/api/v1/deferrals/{d_id}").get_json()["route"]
    assert shown == route("finance", 3, ["fred"])
    # fred may not take it again, nor approve twice.
    assert claim_batch(svc, fred) == []
    with pytest.raises(NotTakeable, match="the next must come from another reviewer"):
        claim_one(svc, fred, d_id)
    with pytest.raises(DecisionRefused, match="you gave it approval 1 of 3"):
        decide(svc, fred, d_id, "approve")
    claim_one(svc, fay, d_id)
    assert "2 of 3 approvals" in decide(svc, fay, d_id, "approve").message
    claim_one(svc, flo, d_id)
    assert decide(svc, flo, d_id, "approve").status == "approved"
    done = agent.get(f"/api/v1/deferrals/{d_id}").get_json()
    assert done["decision"]["decided_by"] == ["fred", "fay", "flo"]
    assert done["route"]["approvals"] == ["fred", "fay", "flo"]
    recorded = audit_events(svc, "deferral.approval_recorded", deferral_id=d_id)
    assert [json.loads(e.payload)["approvals"] for e in recorded] == [
        ["fred"],
        ["fred", "fay"],
    ]
    with svc.db.read() as session:
        assert verify_chain(session).ok


def test_the_principal_may_not_approve_their_own_even_as_a_member(world):
    svc, agent, people, _ = world
    d_id = defer(agent, on_behalf_of={"id": "fred"})["id"]
    with pytest.raises(NotTakeable, match="on your own behalf"):
        claim_one(svc, people["fred"], d_id)


def test_an_edit_voids_the_approvals_given_before_it(world):
    svc, agent, people, _ = world
    d_id = defer(agent, amount=5000)["id"]
    claim_one(svc, people["fred"], d_id)
    decide(svc, people["fred"], d_id, "approve")
    claim_one(svc, people["fay"], d_id)
    edited = edit_and_approve(svc, people["fay"], d_id, {"invoice": "INV-1", "amount": 4000})
    assert edited.status == "pending" and "1 of 3" in edited.message
    with svc.db.read() as session:
        left = session.scalars(select(Approval.username).where(Approval.deferral_id == d_id))
        assert list(left) == ["fay"]
    event = audit_events(svc, "deferral.edited", deferral_id=d_id)[-1]
    assert json.loads(event.payload)["approvals_voided"] == ["fred"]
    # fred's approval was for another action: he may approve the edited one.
    claim_one(svc, people["fred"], d_id)
    assert "2 of 3" in decide(svc, people["fred"], d_id, "approve").message


def test_a_group_that_does_not_exist_falls_back_to_any_reviewer_and_says_so(world):
    svc, agent, people, _ = world
    d = defer(agent, labels={"team": "ghosts"})
    # refund routes to finance (quorum 1 each): ghost is later in the file, so finance wins.
    assert d["route"]["group"] == "finance"
    with svc.db.write() as session:
        from review.groups import Group

        session.delete(session.get(Group, "finance"))
    ghost = defer(agent, labels={"team": "ghosts"}, action={"tool": "crm.note", "args": {}})
    assert ghost["route"]["group"] is None
    evaluated = audit_events(svc, "deferral.evaluated", deferral_id=ghost["id"])[0]
    kept = json.loads(evaluated.payload)["route"]
    assert kept["group"] == "nobody-made-this"
    assert "no reviewer group 'nobody-made-this' exists" in kept["fallback"]
    assert claim_batch(svc, people["rita"]) == [ghost["id"]]


def test_policy_check_reports_a_rule_routing_to_a_missing_group(world, tmp_path):
    app = world[3]
    path = tmp_path / "p.toml"
    path.write_text(POLICY)
    result = app.test_cli_runner().invoke(args=["policy", "check", str(path)])
    assert result.exit_code == 1
    line = POLICY.splitlines().index('group = "nobody-made-this"') + 1
    assert f"{path}:{line}: rule 'ghost': no reviewer group 'nobody-made-this' exists" in (
        result.output
    )


def test_the_migration_carries_a_first_approval_into_the_approvals(empty_database_url):
    from sqlalchemy import MetaData, Table, text

    from review.db import Database
    from review.migrate import downgrade, upgrade

    db = Database(empty_database_url)
    try:
        upgrade(db, "0019")
        meta = MetaData()
        with db.engine.begin() as conn:
            agents = Table("agents", meta, autoload_with=conn)
            deferrals = Table("deferrals", meta, autoload_with=conn)
            conn.execute(agents.insert().values(filled_row(agents, id=1, slug="bot")))
            common = {"agent_id": 1, "status": "pending", "action_digest": "sha256:" + "a" * 64}
            for d_id, level, first in (
                ("dfr_1", "critical", "rita"),
                ("dfr_2", "critical", None),
                ("dfr_3", "low", None),
            ):
                values = {**common, "id": d_id, "webhook_id": d_id, "risk_level": level}
                conn.execute(
                    deferrals.insert().values(
                        filled_row(deferrals, **values, first_approved_by=first)
                    )
                )
        upgrade(db)
        with db.engine.connect() as conn:
            approvals = conn.execute(
                text("SELECT deferral_id, username, action_digest FROM approvals")
            ).all()
            required = dict(
                conn.execute(text("SELECT id, required_approvals FROM deferrals")).all()
            )
        assert [tuple(a) for a in approvals] == [("dfr_1", "rita", "sha256:" + "a" * 64)]
        assert required == {"dfr_1": 2, "dfr_2": 2, "dfr_3": 1}
        downgrade(db, "0019")
        with db.engine.connect() as conn:
            back = dict(conn.execute(text("SELECT id, first_approved_by FROM deferrals")).all())
        assert back == {"dfr_1": "rita", "dfr_2": None, "dfr_3": None}
    finally:
        db.dispose()


def test_a_retry_answers_with_the_route_and_its_approvals_so_far(world):
    svc, agent, people, _ = world
    body = refund()
    body["action"]["args"]["amount"] = 5000
    first = agent.defer(body, msg_id="msg_retry_route").get_json()
    claim_one(svc, people["fred"], first["id"])
    decide(svc, people["fred"], first["id"], "approve")
    again = agent.defer(body, msg_id="msg_retry_route")
    assert again.status_code == 200, again.get_json()
    assert again.get_json()["route"] == route("finance", 3, ["fred"])
