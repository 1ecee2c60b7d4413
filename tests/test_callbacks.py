"""Callbacks: the outbox row commits with the decision; a real worker delivers it, signed,
over real HTTP, retrying on schedule with one webhook-id, and never to a private address."""

import json
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from standardwebhooks.webhooks import Webhook

from approval_queue import delivery
from approval_queue.worker import run_worker
from review.models import Agent, AuditEvent, DeliveryAttempt, OutboxEvent, utcnow
from review.reviewing.claims import Holder, claim_batch
from review.reviewing.decisions import decide
from review.users import create_user
from tests.helpers import AgentClient, Browser, refund


@pytest.fixture
def setup(make_app, make_agent, svc, receiver_factory):
    def build(*script, **overrides):
        receiver = receiver_factory(*script)
        app = make_app(allow_private_callbacks=True, agent_rate=0, **overrides)
        runtime = app.extensions["countersign"]
        base = make_agent(callback_url=receiver.url, allow_private_callbacks=True)
        agent = AgentClient(app.test_client(), base.slug, base.secret)
        with runtime.db.write() as session:
            user = create_user(session, "rita", "reviewer", "correct horse battery")
            session.flush()
            holder = Holder(user.id, "rita", frozenset({"rita"}))
        return app, runtime, agent, holder, receiver

    return build


def approve_one(runtime, agent, holder):
    d_id = agent.defer(refund()).get_json()["id"]
    claim_batch(runtime, holder)
    decide(runtime, holder, d_id, "approve")
    return d_id


def work(app, runtime, until, timeout=15.0):
    """Run burst workers (with rq's scheduler) until `until()` holds."""
    deadline = time.monotonic() + timeout
    with app.app_context():
        while time.monotonic() < deadline:
            run_worker(runtime, burst=True)
            if until():
                return
            time.sleep(0.3)
    raise AssertionError("the worker did not get there in time")


def outbox(runtime):
    with runtime.db.read() as session:
        return session.scalars(select(OutboxEvent)).all()


def test_the_decision_and_its_callback_commit_together(setup):
    app, runtime, agent, holder, receiver = setup()
    d_id = approve_one(runtime, agent, holder)
    [event] = outbox(runtime)
    assert event.deferral_id == d_id and event.status == "pending" and event.id.startswith("evt_")
    body = json.loads(event.body)
    assert body["type"] == "deferral.decided" and body["data"]["status"] == "approved"


def test_no_callback_url_means_no_outbox_row(app, make_agent, svc):
    base = make_agent()
    agent = AgentClient(app.test_client(), base.slug, base.secret)
    with svc.db.write() as session:
        user = create_user(session, "rita", "reviewer", "correct horse battery")
        session.flush()
        holder = Holder(user.id, "rita", frozenset({"rita"}))
    approve_one(svc, agent, holder)
    assert outbox(svc) == []


def test_the_worker_delivers_a_signed_callback_the_receiver_can_verify(setup):
    app, runtime, agent, holder, receiver = setup()
    d_id = approve_one(runtime, agent, holder)
    work(app, runtime, lambda: outbox(runtime)[0].status == "delivered")
    [(headers, body, path)] = receiver.requests
    headers = {k.lower(): v for k, v in headers.items()}
    payload = Webhook(agent.secret).verify(body, headers)
    assert payload["type"] == "deferral.decided" and payload["data"]["id"] == d_id
    assert payload["data"]["decision"]["decided_by"] == ["rita"]
    assert headers["webhook-id"] == outbox(runtime)[0].id
    with runtime.db.read() as session:
        kinds = session.scalars(
            select(AuditEvent.event_type).where(AuditEvent.deferral_id == d_id)
        ).all()
    assert kinds[-2:] == ["deferral.approved", "callback.attempted"]


def test_500_twice_then_200_is_three_attempts_with_one_id(setup):
    app, runtime, agent, holder, receiver = setup(
        (500, {}, 0), (500, {}, 0), (200, {}, 0), retry_schedule="1,1,1"
    )
    approve_one(runtime, agent, holder)
    work(app, runtime, lambda: outbox(runtime)[0].status == "delivered")
    ids = {h["webhook-id"] for h, _b, _p in receiver.requests}
    assert len(receiver.requests) == 3 and len(ids) == 1
    with runtime.db.read() as session:
        codes = session.scalars(
            select(DeliveryAttempt.status_code).order_by(DeliveryAttempt.id)
        ).all()
    assert codes == [500, 500, 200]


def test_retry_after_is_honoured(setup):
    app, runtime, agent, holder, receiver = setup(
        (503, {"Retry-After": "1"}, 0), (200, {}, 0), retry_schedule="3600"
    )
    approve_one(runtime, agent, holder)
    work(app, runtime, lambda: outbox(runtime)[0].status == "delivered")
    assert len(receiver.requests) == 2


def test_410_dead_letters_at_once(setup):
    app, runtime, agent, holder, receiver = setup((410, {}, 0))
    approve_one(runtime, agent, holder)
    work(app, runtime, lambda: outbox(runtime)[0].status == "dead")
    assert len(receiver.requests) == 1


def test_after_the_last_retry_the_callback_is_dead_lettered(setup):
    app, runtime, agent, holder, receiver = setup((500, {}, 0), retry_schedule="1")
    approve_one(runtime, agent, holder)
    work(app, runtime, lambda: outbox(runtime)[0].status == "dead")
    assert len(receiver.requests) == 2
    assert outbox(runtime)[0].last_error == "HTTP 500"


def test_a_redirect_is_a_failure_and_is_not_followed(setup, receiver_factory):
    elsewhere = receiver_factory((200, {}, 0))
    app, runtime, agent, holder, receiver = setup(
        (302, {"Location": elsewhere.url}, 0), retry_schedule="3600"
    )
    approve_one(runtime, agent, holder)
    work(app, runtime, lambda: outbox(runtime)[0].attempts == 1)
    assert elsewhere.requests == []
    assert "redirects are not followed" in outbox(runtime)[0].last_error


def test_a_slow_receiver_times_out_and_is_retried(setup):
    app, runtime, agent, holder, receiver = setup(
        (200, {}, 2), (200, {}, 0), retry_schedule="1", delivery_deadline=1
    )
    approve_one(runtime, agent, holder)
    work(app, runtime, lambda: outbox(runtime)[0].status == "delivered")
    with runtime.db.read() as session:
        errors = session.scalars(select(DeliveryAttempt.error).order_by(DeliveryAttempt.id)).all()
    assert errors[0].startswith("timed out") and errors[-1] is None


def test_a_callback_to_the_metadata_address_is_refused(make_app, make_agent, svc, runner):
    runner.invoke(args=["users", "create", "olivia", "--role", "admin"], input="password123\n")
    result = runner.invoke(
        args=[
            "agents",
            "create",
            "meta",
            "--owner",
            "olivia",
            "--callback-url",
            "http://169.254.169.254/latest/meta-data",
        ]
    )
    assert result.exit_code == 1 and "non-public address" in result.output


def test_every_attempt_checks_the_address_again(setup, make_app):
    app, runtime, agent, holder, receiver = setup(retry_schedule="3600")
    with runtime.db.write() as session:  # the URL changed (or its DNS did) since registration
        session.execute(update(Agent).values(callback_url="http://169.254.169.254/hook"))
    approve_one(runtime, agent, holder)
    strict = make_app(retry_schedule="3600")  # COUNTERSIGN_ALLOW_PRIVATE_CALLBACKS=0
    strict_rt = strict.extensions["countersign"]
    work(strict, strict_rt, lambda: outbox(strict_rt)[0].attempts == 1)
    assert outbox(strict_rt)[0].last_error.startswith("refused: 169.254.169.254")
    assert receiver.requests == []


def test_redis_down_at_decision_time_delays_the_callback_but_loses_nothing(setup, make_app):
    app, runtime, agent, holder, receiver = setup()
    down = make_app(allow_private_callbacks=True, redis_url="redis://127.0.0.1:1/0")
    down_rt = down.extensions["countersign"]
    d_id = agent.defer(refund()).get_json()["id"]
    claim_batch(down_rt, holder)
    decide(down_rt, holder, d_id, "approve")
    assert outbox(runtime)[0].status == "pending"
    work(app, runtime, lambda: outbox(runtime)[0].status == "delivered")
    assert len(receiver.requests) == 1


def test_retry_after_parsing():
    now = utcnow()
    assert delivery.retry_after_seconds("120", now) == 120
    assert delivery.retry_after_seconds("999999999", now) == 86400
    from email.utils import format_datetime

    later = format_datetime(now + timedelta(seconds=60), usegmt=True)
    assert 55 <= delivery.retry_after_seconds(later, now) <= 60
    assert delivery.retry_after_seconds("soon", now) is None


def test_an_overdue_deferral_expires_by_itself_and_the_agent_is_told(setup):
    app, runtime, agent, holder, receiver = setup()
    d_id = agent.defer(refund(expires_in=60)).get_json()["id"]
    from review.models import Deferral

    with runtime.db.write() as session:
        session.execute(update(Deferral).values(expires_at=utcnow() - timedelta(seconds=1)))
    work(app, runtime, lambda: bool(outbox(runtime)) and outbox(runtime)[0].status == "delivered")
    resource = agent.get(f"/api/v1/deferrals/{d_id}").get_json()
    assert resource["status"] == "expired"
    assert resource["decision"]["decided_by"] == [] and resource["decision"]["valid_until"] is None
    [(headers, body, _path)] = receiver.requests
    assert json.loads(body)["data"]["status"] == "expired"


def test_owners_see_dead_letters_and_redeliver_them(setup):
    app, runtime, agent, holder, receiver = setup((410, {}, 0), (200, {}, 0))
    d_id = approve_one(runtime, agent, holder)
    work(app, runtime, lambda: outbox(runtime)[0].status == "dead")
    owner = Browser(app.test_client(), "olivia")
    page = owner.get(f"/agents/{agent.slug}/deliveries?status=dead").get_data(as_text=True)
    event_id = outbox(runtime)[0].id
    assert event_id in page and "dead letter" in page and "Redeliver" in page and "HTTP 410" in page
    response = owner.post(f"/agents/{agent.slug}/deliveries/{event_id}/redeliver")
    assert response.status_code == 302
    work(app, runtime, lambda: outbox(runtime)[0].status == "delivered")
    assert [h["webhook-id"] for h, _b, _p in receiver.requests] == [event_id, event_id]
    with runtime.db.read() as session:
        kinds = session.scalars(
            select(AuditEvent.event_type).where(AuditEvent.deferral_id == d_id)
        ).all()
    assert "callback.redelivery_requested" in kinds
    again = owner.post(f"/agents/{agent.slug}/deliveries/{event_id}/redeliver")
    assert "not a dead letter" in owner.get(again.location).get_data(as_text=True)


def test_only_owners_and_admins_redeliver_and_auditors_only_read(setup):
    app, runtime, agent, holder, receiver = setup((410, {}, 0))
    approve_one(runtime, agent, holder)
    work(app, runtime, lambda: outbox(runtime)[0].status == "dead")
    event_id = outbox(runtime)[0].id
    with runtime.db.write() as session:
        create_user(session, "audrey", "auditor", "correct horse battery")
    other = Browser(app.test_client(), "rita")  # a reviewer who does not own the agent
    assert other.get(f"/agents/{agent.slug}/deliveries").status_code == 403
    assert other.post(f"/agents/{agent.slug}/deliveries/{event_id}/redeliver").status_code == 403
    auditor = Browser(app.test_client(), "audrey")
    page = auditor.get(f"/agents/{agent.slug}/deliveries").get_data(as_text=True)
    assert event_id in page and "Redeliver" not in page
    assert auditor.post(f"/agents/{agent.slug}/deliveries/{event_id}/redeliver").status_code == 403
    assert outbox(runtime)[0].status == "dead"


def test_the_item_page_follows_its_callback_until_it_lands(setup):
    app, runtime, agent, holder, receiver = setup()
    d_id = approve_one(runtime, agent, holder)
    browser = Browser(app.test_client(), "rita")
    panel = browser.get(f"/deferrals/{d_id}/callbacks").get_data(as_text=True)
    assert 'hx-trigger="every 2s"' in panel and "not tried yet" in panel
    work(app, runtime, lambda: outbox(runtime)[0].status == "delivered")
    panel = browser.get(f"/deferrals/{d_id}/callbacks").get_data(as_text=True)
    assert "hx-trigger" not in panel and "delivered" in panel and "HTTP 200" in panel
    assert 'id="callbacks"' in browser.get(f"/deferrals/{d_id}").get_data(as_text=True)
