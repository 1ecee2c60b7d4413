"""Reviewing in the browser's terms: login, queue, batches under a lease, decisions."""

import json
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from review.audit.verify import verify_chain
from review.models import AuditEvent, Deferral, User, utcnow
from tests.helpers import csrf_token, logged_in, refund


def test_pages_need_a_login(client):
    response = client.get("/queue")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_login_sets_a_safe_session_cookie_and_a_strict_csp(client, people):
    page = client.get("/login")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    response = client.post(
        "/login",
        data={
            "username": "rita",
            "password": "correct horse battery",
            "csrf_token": csrf_token(page.get_data(as_text=True)),
        },
    )
    assert response.status_code == 302
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_a_post_without_the_csrf_token_is_refused(app, people):
    client = app.test_client()
    response = client.post("/login", data={"username": "rita", "password": "correct horse battery"})
    assert response.status_code == 400
    b = logged_in(app, "rita")
    assert b.client.post("/batch/start").status_code == 400  # no token


def test_failed_logins_are_audited_and_throttled(app, svc, people):
    client = app.test_client()
    token = csrf_token(client.get("/login").get_data(as_text=True))
    codes = [
        client.post(
            "/login", data={"username": "rita", "password": "wrong", "csrf_token": token}
        ).status_code
        for _ in range(6)
    ]
    assert codes == [401] * 5 + [429]
    right = client.post(
        "/login",
        data={"username": "rita", "password": "correct horse battery", "csrf_token": token},
    )
    assert right.status_code == 429  # the account stays locked for the window
    with svc.db.read() as session:
        kinds = session.scalars(
            select(AuditEvent.event_type).where(AuditEvent.event_type.like("login.%"))
        ).all()
    # Five failures, then the throttle: noted once per window, however often it is hit.
    assert kinds.count("login.failed") == 5 and kinds.count("login.throttled") == 1


def test_the_queue_lists_pending_deferrals_by_priority_with_counts(app, agent, people):
    agent.defer(
        refund(action={"tool": "notes.add", "args": {}}, risk={"score": 0}, summary="a low one")
    )
    agent.defer(refund(labels={"env": "prod"}, summary="a risky one"))
    page = logged_in(app, "rita").get("/queue").get_data(as_text=True)
    assert page.index("a risky one") < page.index("a low one")
    assert "high 1" in page and "low 1" in page
    assert "Start batch" in page


def test_queue_filters_narrow_the_list(app, make_agent, people):
    a, b = make_agent("agent-a"), make_agent("agent-b")
    a.defer(refund(summary="refund for Ann", labels={"env": "prod"}))
    b.defer(refund(summary="refund for Bob"))
    rita = logged_in(app, "rita")
    assert "Bob" not in rita.get("/queue?agent=agent-a").get_data(as_text=True)
    assert "Ann" not in rita.get("/queue?q=bob").get_data(as_text=True)
    only_prod = rita.get("/queue?label=env%3Dprod").get_data(as_text=True)
    assert "Ann" in only_prod and "Bob" not in only_prod
    fragment = rita.get("/queue?q=ann", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert fragment.lstrip().startswith('<section id="queue-body"')


def test_start_batch_claims_the_top_items_under_a_lease(app, svc, agent, people):
    for i in range(7):
        agent.defer(refund(summary=f"item {i}"))
    rita = logged_in(app, "rita")
    started = rita.post("/batch/start", {"answer": "page"})  # as static/review.js sends it
    assert started.status_code == 200 and "Your batch" in started.get_data(as_text=True)
    with svc.db.read() as session:
        held = session.scalars(select(Deferral).where(Deferral.status == "in_review")).all()
    assert len(held) == svc.settings.batch_size == 5
    assert {d.claimed_by for d in held} == {held[0].claimed_by}
    assert all(d.lease_expires_at > utcnow() + timedelta(minutes=14) for d in held)
    page = rita.get("/batch").get_data(as_text=True)
    assert page.count('<article class="card') == 5 and "Release batch" in page
    sam = logged_in(app, "sam")
    sam.post("/batch/start")
    with svc.db.read() as session:
        assert session.scalar(select(Deferral.id).where(Deferral.status == "pending")) is None
    assert rita.post("/batch/release").status_code == 302
    with svc.db.read() as session:
        assert len(session.scalars(select(Deferral).where(Deferral.status == "pending")).all()) == 5


def _claim_one(app, agent, name="rita", body=None):
    """`name` logged in, holding the deferral the agent just made in a batch."""
    d = agent.defer(body or refund()).get_json()
    b = logged_in(app, name)
    b.post("/batch/start")
    return b, d["id"]


def test_approve_commits_at_once_audited_with_the_reviewer(app, svc, agent, people):
    rita, d_id = _claim_one(app, agent)
    response = rita.post(f"/batch/{d_id}/approve", htmx=True)
    assert response.status_code == 200 and "Approved." in response.get_data(as_text=True)
    api = agent.get(f"/api/v1/deferrals/{d_id}").get_json()
    assert api["status"] == "approved"
    assert api["decision"]["decided_by"] == ["rita"] and api["decision"]["valid_until"]
    with svc.db.read() as session:
        event = session.scalars(
            select(AuditEvent).where(
                AuditEvent.deferral_id == d_id, AuditEvent.event_type == "deferral.approved"
            )
        ).one()
        assert event.actor_id == "rita"
        assert json.loads(event.payload)["action_digest"] == api["action_digest"]
        assert verify_chain(session).ok


def test_reject_needs_a_reason_and_takes_a_quick_pick(app, svc, agent, people):
    rita, d_id = _claim_one(app, agent)
    no_reason = rita.post(f"/batch/{d_id}/reject", htmx=True).get_data(as_text=True)
    assert "Say why you reject it" in no_reason
    assert agent.get(f"/api/v1/deferrals/{d_id}").get_json()["status"] == "in_review"
    rita.post(f"/batch/{d_id}/reject", {"reason": ["", "Wrong target or recipient"]}, htmx=True)
    decision = agent.get(f"/api/v1/deferrals/{d_id}").get_json()["decision"]
    assert decision["outcome"] == "rejected" and decision["reason"] == "Wrong target or recipient"


def test_a_stale_lease_gets_a_clear_message_and_changes_nothing(app, svc, agent, people):
    rita, d_id = _claim_one(app, agent)
    with svc.db.write() as session:
        session.execute(update(Deferral).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    page = rita.post(f"/batch/{d_id}/approve", htmx=True).get_data(as_text=True)
    assert "your claim on this item lapsed" in page
    assert agent.get(f"/api/v1/deferrals/{d_id}").get_json()["status"] == "in_review"
    logged_in(app, "sam").post("/batch/start")  # the lapsed claim goes back and sam takes it
    with svc.db.read() as session:
        d = session.get(Deferral, d_id)
        sam_id = session.scalar(select(User.id).where(User.username == "sam"))
        assert d.status == "in_review" and d.claimed_by == sam_id
        kinds = session.scalars(
            select(AuditEvent.event_type).where(AuditEvent.deferral_id == d_id)
        ).all()
    assert "deferral.lease_lapsed" in kinds


def test_an_already_decided_item_says_who_decided(app, svc, agent, people):
    rita, d_id = _claim_one(app, agent)
    rita.post(f"/batch/{d_id}/approve", htmx=True)
    again = rita.post(f"/batch/{d_id}/reject", {"reason": "too late"}, htmx=True)
    assert "already approved by rita" in again.get_data(as_text=True)


def test_an_expired_deferral_cannot_be_approved(app, svc, agent, people):
    rita, d_id = _claim_one(app, agent)
    with svc.db.write() as session:
        session.execute(update(Deferral).values(expires_at=utcnow() - timedelta(seconds=1)))
    page = rita.post(f"/batch/{d_id}/approve", htmx=True).get_data(as_text=True)
    assert "expired before your decision" in page
    assert agent.get(f"/api/v1/deferrals/{d_id}").get_json()["status"] == "expired"


def test_auditors_read_but_never_decide(app, svc, agent, people):
    agent.defer()
    audrey = logged_in(app, "audrey")
    page = audrey.get("/queue").get_data(as_text=True)
    assert "Refund $740" in page and "Start batch" not in page
    assert audrey.post("/batch/start").status_code == 403
    assert audrey.get("/batch").status_code == 403


def test_the_item_page_shows_the_deferral_and_its_audit_chain(app, svc, agent, people):
    d_id = agent.defer().get_json()["id"]
    page = logged_in(app, "audrey").get(f"/deferrals/{d_id}").get_data(as_text=True)
    assert "deferral.received" in page and "deferral.evaluated" in page
    assert "amount 740 &gt; 500" in page
    assert 'rel="noopener noreferrer"' in page and 'target="_blank"' in page
    assert "unverified agent text" in page


def test_nobody_approves_a_deferral_made_on_their_own_behalf(app, svc, agent, people):
    mine = agent.defer(refund(on_behalf_of={"id": "Rita@Example.com"})).get_json()["id"]
    other = agent.defer(refund(summary="someone else's")).get_json()["id"]
    rita = logged_in(app, "rita")
    rita.post("/batch/start")
    with svc.db.read() as session:
        assert session.get(Deferral, mine).status == "pending"  # never handed to rita
        assert session.get(Deferral, other).status == "in_review"
    from review.reviewing.claims import Holder
    from review.reviewing.decisions import DecisionRefused, decide

    with svc.db.write() as session:  # even if she somehow held it
        rita_id = session.scalar(select(User.id).where(User.username == "rita"))
        session.execute(
            update(Deferral)
            .where(Deferral.id == mine)
            .values(
                status="in_review",
                claimed_by=rita_id,
                lease_expires_at=utcnow() + timedelta(minutes=5),
            )
        )
    holder = Holder(rita_id, "rita", frozenset({"rita", "rita@example.com"}))
    with pytest.raises(DecisionRefused, match="your own behalf"):
        decide(svc, holder, mine, "approve")


def test_critical_items_need_two_different_approvers(app, svc, agent, people):
    rita, d_id = _claim_one(app, agent, body=refund(risk={"score": 90}))
    first = rita.post(f"/batch/{d_id}/approve", htmx=True).get_data(as_text=True)
    assert "1 of 2 approvals" in first
    api = agent.get(f"/api/v1/deferrals/{d_id}").get_json()
    assert api["status"] == "pending" and api["decision"] is None
    assert "1 of 2 approvals" in rita.get("/queue").get_data(as_text=True)
    rita.post("/batch/start")  # never reaches the same reviewer again
    assert agent.get(f"/api/v1/deferrals/{d_id}").get_json()["status"] == "pending"
    sam = logged_in(app, "sam")
    sam.post("/batch/start")
    sam.post(f"/batch/{d_id}/approve", htmx=True)
    decision = agent.get(f"/api/v1/deferrals/{d_id}").get_json()["decision"]
    assert decision["outcome"] == "approved" and decision["decided_by"] == ["rita", "sam"]


def test_any_reject_ends_a_two_person_item(app, svc, agent, people):
    rita, d_id = _claim_one(app, agent, body=refund(risk={"score": 90}))
    rita.post(f"/batch/{d_id}/approve", htmx=True)
    sam = logged_in(app, "sam")
    sam.post("/batch/start")
    sam.post(f"/batch/{d_id}/reject", {"reason": "no"}, htmx=True)
    decision = agent.get(f"/api/v1/deferrals/{d_id}").get_json()["decision"]
    assert decision["outcome"] == "rejected" and decision["decided_by"] == ["sam"]


def test_the_two_person_level_follows_the_setting(make_app, make_agent, people):
    app = make_app(two_person_level="none")
    agent = make_agent().on(app)
    rita, d_id = _claim_one(app, agent, body=refund(risk={"score": 90}))
    rita.post(f"/batch/{d_id}/approve", htmx=True)
    assert agent.get(f"/api/v1/deferrals/{d_id}").get_json()["status"] == "approved"


HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)><style>body{display:none}</style>"


def test_hostile_agent_text_renders_as_inert_text(app, svc, agent, people):
    d_id = agent.defer(
        refund(
            summary=HOSTILE[:400],
            rationale=HOSTILE * 20,
            action={"tool": "x.<b>bold</b>", "args": {"html": HOSTILE, "big": "y" * 20000}},
            before={"note": HOSTILE},
            after={"note": HOSTILE + " changed"},
            labels={"<i>": "</dd><script>x</script>"},
        )
    ).get_json()["id"]
    rita = logged_in(app, "rita")
    queue_page = rita.get("/queue").get_data(as_text=True)
    rita.post("/batch/start")
    for page in (
        queue_page,
        rita.get("/batch").get_data(as_text=True),
        rita.get(f"/deferrals/{d_id}").get_data(as_text=True),
    ):
        assert (
            "<script>alert" not in page and "<img src=x" not in page and "<style>body" not in page
        )
        assert "<b>bold</b>" not in page and "<i>" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_approving_several_takes_only_read_items_and_no_two_person_ones(app, svc, agent, people):
    plain = [agent.defer(refund(summary=f"plain {i}")).get_json()["id"] for i in range(3)]
    critical = agent.defer(refund(summary="critical", risk={"score": 95})).get_json()["id"]
    rita = logged_in(app, "rita")
    rita.post("/batch/start")
    with svc.db.write() as session:  # claimed a minute ago: up to 60 s in view can be true
        session.execute(update(Deferral).values(claimed_at=utcnow() - timedelta(seconds=60)))
    seen = {f"seen_ms.{d}": "5000" for d in plain[:2] + [critical]}
    seen[f"seen_ms.{plain[2]}"] = "1200"  # in view, but not long enough to count as read
    response = rita.post("/batch/selected/approve", {"ids": plain + [critical], **seen})
    assert response.status_code == 302
    page = rita.get("/batch").get_data(as_text=True)
    assert "Approved 2 items." in page
    assert "not read yet (in view under 3 s): “plain 2” (in view 1.2 s)" in page
    assert "Skipped “critical”: needs 2 approvers" in page
    assert plain[2] not in page.split("not read yet")[1].split("</p>")[0]  # summaries, not ids
    statuses = {
        d: agent.get(f"/api/v1/deferrals/{d}").get_json()["status"] for d in plain + [critical]
    }
    assert statuses == {
        plain[0]: "approved",
        plain[1]: "approved",
        plain[2]: "in_review",
        critical: "in_review",
    }


def test_rejecting_several_takes_one_reason_for_all(app, svc, agent, people):
    ids = [agent.defer(refund(summary=f"r {i}")).get_json()["id"] for i in range(3)]
    rita = logged_in(app, "rita")
    rita.post("/batch/start")
    rita.post("/batch/selected/reject", {"ids": ids, "reason": "duplicate run"})
    decisions = [agent.get(f"/api/v1/deferrals/{d}").get_json()["decision"] for d in ids]
    assert {(d["outcome"], d["reason"]) for d in decisions} == {("rejected", "duplicate run")}


def test_rejecting_several_without_a_reason_changes_nothing(app, svc, agent, people):
    ids = [agent.defer(refund(summary=f"r {i}")).get_json()["id"] for i in range(2)]
    rita = logged_in(app, "rita")
    rita.post("/batch/start")
    rita.post("/batch/selected/reject", {"ids": ids})
    assert "Say why you reject it" in rita.get("/batch").get_data(as_text=True)
    assert {agent.get(f"/api/v1/deferrals/{d}").get_json()["status"] for d in ids} == {"in_review"}


def test_a_decision_renews_the_lease_on_the_rest_of_the_batch(app, svc, agent, people):
    ids = [agent.defer(refund(summary=f"r {i}")).get_json()["id"] for i in range(2)]
    rita = logged_in(app, "rita")
    rita.post("/batch/start")
    soon = utcnow() + timedelta(seconds=30)
    with svc.db.write() as session:
        session.execute(update(Deferral).values(lease_expires_at=soon))
    held = rita.get("/batch").get_data(as_text=True)
    first = ids[0] if f"card-{ids[0]}" in held else ids[1]
    rita.post(f"/batch/{first}/approve", htmx=True)
    with svc.db.read() as session:
        other = session.get(Deferral, ids[1] if first == ids[0] else ids[0])
    assert other.lease_expires_at > soon + timedelta(minutes=10)
