"""Reading, not opening; the reviewer's flow end to end, through the pages (issue 15).

Time in view comes with each decision (`seen_ms`); the server caps it at the time
since the claim, flags a single decision taken sooner than COUNTERSIGN_MIN_READ_SECONDS
and refuses to approve unread items in bulk. The browser's half is in
tests/test_reviewer_card.py.
"""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select, update

from review.agents.killswitch import Actor, kill
from review.models import Deferral, User, utcnow
from review.web.request_ids import RequestIdFilter
from tests.helpers import audit_events, logged_in, refund


def _claimed_ago(svc, seconds: float) -> None:
    with svc.db.write() as session:
        session.execute(
            update(Deferral)
            .where(Deferral.status == "in_review")
            .values(claimed_at=utcnow() - timedelta(seconds=seconds))
        )


def _decision_payload(svc, d_id: str, kind: str) -> dict:
    (event,) = audit_events(svc, kind, deferral_id=d_id)
    return json.loads(event.payload)


def test_a_decision_keeps_its_time_in_view_in_its_audit_event(app, svc, agent, people):
    d_id = agent.defer().get_json()["id"]
    rita = logged_in(app, "rita")
    rita.post("/batch/start")
    _claimed_ago(svc, 30)
    answer = rita.post(f"/batch/{d_id}/approve", {"seen_ms": "7400"}, htmx=True)
    assert "Approved." in answer.get_data(as_text=True)
    assert "flagged" not in answer.get_data(as_text=True)
    payload = _decision_payload(svc, d_id, "deferral.approved")
    assert payload["seconds_in_view"] == 7.4 and payload["reported_ms"] == 7400
    assert payload["read"] is True and payload["fast"] is False


def test_a_decision_faster_than_the_minimum_is_accepted_and_flagged(app, svc, agent, people):
    d_id = agent.defer().get_json()["id"]
    rita = logged_in(app, "rita")
    rita.post("/batch/start")
    _claimed_ago(svc, 30)
    answer = rita.post(f"/batch/{d_id}/reject", {"reason": "no", "seen_ms": "900"}, htmx=True)
    text = answer.get_data(as_text=True)
    assert "Rejected. (flagged: decided after 0.9 s in view, under 3 s)" in text
    payload = _decision_payload(svc, d_id, "deferral.rejected")
    assert payload["fast"] is True and payload["seconds_in_view"] == 0.9


def test_time_in_view_is_capped_at_the_time_since_the_claim(app, svc, agent, people):
    d_id = agent.defer().get_json()["id"]
    rita = logged_in(app, "rita")
    rita.post("/batch/start")
    _claimed_ago(svc, 2)
    rita.post(f"/batch/{d_id}/approve", {"seen_ms": "600000"}, htmx=True)  # "ten minutes"
    payload = _decision_payload(svc, d_id, "deferral.approved")
    assert payload["reported_ms"] == 600000
    assert 2 <= payload["seconds_in_view"] < 10 and payload["fast"] is True


def test_a_decision_without_a_figure_counts_as_unread(app, svc, agent, people):
    d_id = agent.defer().get_json()["id"]
    rita = logged_in(app, "rita")
    rita.post("/batch/start")
    rita.post(f"/batch/{d_id}/approve", htmx=True)
    payload = _decision_payload(svc, d_id, "deferral.approved")
    assert payload["reported_ms"] is None and payload["read"] is False


def test_ticking_select_is_not_reading_and_there_is_no_open_request(app, svc, agent, people):
    ids = [agent.defer(refund(summary=f"refund {n}")).get_json()["id"] for n in range(2)]
    rita = logged_in(app, "rita")
    rita.post("/batch/start")
    assert rita.post(f"/batch/{ids[0]}/open").status_code == 404  # gone: it cost a request
    _claimed_ago(svc, 60)
    rita.post("/batch/selected/approve", {"ids": ids})  # selected, never in view
    page = rita.get("/batch").get_data(as_text=True)
    assert "not read yet (in view under 3 s): “refund 0” (in view 0.0 s); “refund 1”" in page
    assert {agent.get(f"/api/v1/deferrals/{d}").get_json()["status"] for d in ids} == {"in_review"}


def test_min_read_seconds_zero_counts_everything_as_read(make_app, make_agent, people):
    app = make_app(min_read_seconds=0)
    agent = make_agent().on(app)
    d_id = agent.defer().get_json()["id"]
    rita = logged_in(app, "rita")
    rita.post("/batch/start")
    rita.post("/batch/selected/approve", {"ids": [d_id]})
    assert agent.get(f"/api/v1/deferrals/{d_id}").get_json()["status"] == "approved"


def test_reject_without_a_reason_keeps_the_form_and_its_buttons(app, svc, agent, people):
    d_id = agent.defer().get_json()["id"]
    rita = logged_in(app, "rita")
    rita.post("/batch/start")
    card = rita.post(f"/batch/{d_id}/reject", {"reason": "  "}, htmx=True).get_data(as_text=True)
    assert "Say why you reject it" in card and 'role="alert"' in card
    assert f'id="reason-{d_id}"' in card and 'aria-invalid="true"' in card
    assert ">Approve</button>" in card and ">Reject</button>" in card
    assert 'id="decision-status" hx-swap-oob="innerHTML"' in card
    assert agent.get(f"/api/v1/deferrals/{d_id}").get_json()["status"] == "in_review"


def test_a_decision_updates_the_count_of_items_left(app, svc, agent, people):
    ids = [agent.defer(refund(summary=f"refund {n}")).get_json()["id"] for n in range(3)]
    rita = logged_in(app, "rita")
    rita.post("/batch/start")
    answer = rita.post(f"/batch/{ids[0]}/approve", htmx=True).get_data(as_text=True)
    assert '<span id="batch-left" hx-swap-oob="innerHTML">2</span>' in answer


def test_messages_say_what_happened(app, svc, agent, people):
    first, second = (agent.defer(refund(summary=f"s{n}")).get_json()["id"] for n in range(2))
    critical = agent.defer(refund(summary="big", risk={"score": 95})).get_json()["id"]
    rita = logged_in(app, "rita")
    rita.post("/batch/start")
    rita.post(f"/batch/{critical}/approve", htmx=True)  # 1 of 2: back to the queue
    again = rita.post(f"/batch/{critical}/approve", htmx=True).get_data(as_text=True)
    assert "you gave it approval 1 of 2" in again and "lapsed" not in again
    rita.post(f"/batch/{first}/approve", htmx=True)
    twice = rita.post(f"/batch/{first}/approve", htmx=True).get_data(as_text=True)
    assert "already approved by rita" in twice and "lapsed" not in twice
    kill(svc, "billing-bot", Actor("user", "ada"), "refund loop at 03:00")
    killed = rita.post(f"/batch/{second}/approve", htmx=True).get_data(as_text=True)
    assert "already killed by ada: refund loop at 03:00" in killed
    assert "the system" not in killed


def test_start_batch_claims_from_the_queue_as_filtered(app, svc, make_agent, people):
    billing, ops = make_agent("billing-bot"), make_agent("ops-bot")
    low = billing.defer(
        refund(action={"tool": "notes.add", "args": {}}, risk={"score": 0}, summary="low one")
    ).get_json()["id"]
    billing.defer(refund(labels={"env": "prod"}, summary="high one"))
    ops.defer(refund(summary="other agent", labels={"env": "prod"}))
    rita = logged_in(app, "rita")
    queue = rita.get("/queue?level=low").get_data(as_text=True)
    assert '<input type="hidden" name="level" value="low">' in queue
    response = rita.post("/batch/start", {"level": "low", "answer": "page"})  # as JS sends it
    started = response.get_data(as_text=True)  # the batch page itself, at its own address
    assert response.status_code == 200 and 'data-address="/batch?level=low"' in started
    assert f'id="card-{low}"' in started and 'name="level" value="low"' in started
    with svc.db.read() as session:
        held = session.scalars(select(Deferral.id).where(Deferral.status == "in_review")).all()
    assert held == [low]
    batch = rita.get("/batch?level=low").get_data(as_text=True)
    assert 'name="level" value="low"' in batch and "Next batch" in batch
    rita.post("/batch/release")
    rita.post("/batch/start", {"agent": "ops-bot", "label": "env=prod"})
    with svc.db.read() as session:
        held = session.scalars(select(Deferral.summary).where(Deferral.status == "in_review")).all()
    assert held == ["other agent"]


def test_start_batch_without_js_redirects_to_the_batch_so_a_reload_does_not_claim_again(
    app, svc, make_agent, people
):
    billing = make_agent("billing-bot")
    low = billing.defer(
        refund(action={"tool": "notes.add", "args": {}}, risk={"score": 0}, summary="low one")
    ).get_json()["id"]
    billing.defer(refund(summary="high one"))
    rita = logged_in(app, "rita")
    response = rita.post("/batch/start", {"level": "low"})  # a plain form post
    assert response.status_code == 303
    assert response.headers["Location"] == "/batch?level=low"
    page = rita.get(response.headers["Location"]).get_data(as_text=True)
    assert f'id="card-{low}"' in page and 'class="inline start-batch"' in page
    claims = audit_events(svc, "deferral.claimed")
    assert [e.deferral_id for e in claims] == [low]  # one claim, one event


def test_a_row_is_claimed_from_the_queue_and_decided_on_its_page(app, svc, agent, people):
    d_id = agent.defer().get_json()["id"]
    rita = logged_in(app, "rita")
    assert f"/deferrals/{d_id}/claim" in rita.get("/queue").get_data(as_text=True)
    item = rita.get(f"/deferrals/{d_id}").get_data(as_text=True)
    assert ">Claim</button>" in item and ">Approve</button>" not in item
    response = rita.post(f"/deferrals/{d_id}/claim")
    assert response.headers["Location"].endswith(f"/deferrals/{d_id}")
    item = rita.get(f"/deferrals/{d_id}").get_data(as_text=True)
    assert ">Approve</button>" in item and 'name="on" value="item"' in item
    _claimed_ago(svc, 10)
    done = rita.post(f"/batch/{d_id}/approve", {"on": "item", "seen_ms": "5000"})
    assert done.headers["Location"].endswith(f"/deferrals/{d_id}")
    assert agent.get(f"/api/v1/deferrals/{d_id}").get_json()["status"] == "approved"
    sam = logged_in(app, "sam")
    refused = sam.post(f"/deferrals/{d_id}/claim")
    assert "Not claimed: It is already approved." in sam.get(refused.headers["Location"]).get_data(
        as_text=True
    )


def test_an_action_asked_again_after_a_rejection_shows_that_history(app, svc, agent, people):
    first = agent.defer(refund(summary="refund, first ask")).get_json()["id"]
    rita = logged_in(app, "rita")
    rita.post("/batch/start")
    rita.post(f"/batch/{first}/reject", {"reason": "customer already refunded"}, htmx=True)
    again = agent.defer(refund(summary="refund, asked again")).get_json()["id"]  # new webhook-id
    sam = logged_in(app, "sam")
    sam.post("/batch/start")
    page = sam.get("/batch").get_data(as_text=True)
    card = page[page.index(f'id="card-{again}"') :]
    assert "Earlier decisions" in card and "asked-again" in card
    assert "rejected" in card and "same action" in card and "by rita" in card
    assert "customer already refunded" in card and f"/deferrals/{first}" in card


def test_keyboard_shortcuts_are_a_setting_of_each_user(app, svc, agent, people):
    agent.defer()
    rita = logged_in(app, "rita")
    page = rita.get("/settings").get_data(as_text=True)
    assert "Keyboard shortcuts" in page and "checked" in page
    rita.post("/settings", {})  # the box unticked
    with svc.db.read() as session:
        assert (
            session.scalar(select(User.keyboard_shortcuts).where(User.username == "rita")) is False
        )
    rita.post("/batch/start")
    batch = rita.get("/batch").get_data(as_text=True)
    assert 'data-shortcuts="off"' in batch and 'aria-keyshortcuts="a"' not in batch
    assert audit_events(svc, "user.settings_changed")[-1].actor_id == "rita"
    rita.post("/settings", {"keyboard_shortcuts": "on"})
    assert 'data-shortcuts="off"' not in rita.get("/batch").get_data(as_text=True)


def test_error_pages_are_pages_of_the_site(app, people):
    rita = logged_in(app, "audrey")
    for path, method, code in (
        ("/no-such-page", "get", 404),
        ("/batch", "get", 403),  # auditors read, never decide
        ("/batch/start", "get", 405),
    ):
        response = getattr(rita.client, method)(path)
        page = response.get_data(as_text=True)
        assert response.status_code == code, path
        assert f'<h1 id="error-title">{code}' in page and "app.css" in page, path
    assert "POST" in rita.client.get("/batch/start").headers["Allow"]
    api = app.test_client().get("/api/v1/nothing-here")
    assert api.status_code == 404 and api.get_json()["error"]["code"] == "not_found"


def test_an_unhandled_error_is_the_sites_500_page_with_its_request_id(make_app, people, caplog):
    app = make_app()
    app.config["PROPAGATE_EXCEPTIONS"] = False  # as in production (TESTING turned it on)

    def fails():
        raise RuntimeError("a failure the test asked for")

    app.add_url_rule("/test-only/fails", "test_only_fails", fails)
    rita = logged_in(app, "rita")
    caplog.handler.addFilter(RequestIdFilter())  # as on the app's own log handler
    response = rita.client.get("/test-only/fails", headers={"X-Request-ID": "req-500-test"})
    page = response.get_data(as_text=True)
    assert response.status_code == 500
    assert '<h1 id="error-title">500' in page and "app.css" in page
    assert "<code>req-500-test</code>" in page and "a failure the test asked" not in page
    logged = [r for r in caplog.records if r.exc_info and r.request_id == "req-500-test"]
    assert logged, "the traceback was not logged under the request id the page gives"
