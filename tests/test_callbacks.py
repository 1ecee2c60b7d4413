"""Callbacks: the outbox row commits with the decision; a real worker delivers it, signed,
over real HTTP, retrying on schedule with one webhook-id, and never to a private address."""

import json
from datetime import timedelta

from sqlalchemy import select, update
from standardwebhooks.webhooks import Webhook

from approval_queue import delivery
from review.models import Agent, AuditEvent, DeliveryAttempt, OutboxEvent, utcnow
from review.reviewing.claims import claim_batch
from review.reviewing.decisions import decide
from review.users import create_user
from tests.helpers import CallbackWorld, approved, logged_in, refund, reviewer, work_until


def approve_one(world: CallbackWorld) -> str:
    """Reviewer rita approves a deferral the world's agent makes; its id."""
    return approved(world.svc, world.agent, reviewer(world.svc))["id"]


def outbox(runtime):
    with runtime.db.read() as session:
        return session.scalars(select(OutboxEvent)).all()


def test_the_decision_and_its_callback_commit_together(callback_world):
    world = callback_world()
    d_id = approve_one(world)
    [event] = outbox(world.svc)
    assert event.deferral_id == d_id and event.status == "pending" and event.id.startswith("evt_")
    body = json.loads(event.body)
    assert body["type"] == "deferral.decided" and body["data"]["status"] == "approved"


def test_no_callback_url_means_no_outbox_row(svc, agent):
    approved(svc, agent, reviewer(svc))
    assert outbox(svc) == []


def test_the_worker_delivers_a_signed_callback_the_receiver_can_verify(callback_world):
    world = callback_world()
    d_id = approve_one(world)
    world.work_until(lambda: outbox(world.svc)[0].status == "delivered")
    [(headers, body, path)] = world.receiver.requests
    headers = {k.lower(): v for k, v in headers.items()}
    payload = Webhook(world.agent.secret).verify(body, headers)
    assert payload["type"] == "deferral.decided" and payload["data"]["id"] == d_id
    assert payload["data"]["decision"]["decided_by"] == ["rita"]
    assert headers["webhook-id"] == outbox(world.svc)[0].id
    with world.svc.db.read() as session:
        kinds = session.scalars(
            select(AuditEvent.event_type).where(AuditEvent.deferral_id == d_id)
        ).all()
    assert kinds[-2:] == ["deferral.approved", "callback.attempted"]


def test_500_twice_then_200_is_three_attempts_with_one_id(callback_world):
    world = callback_world((500, {}, 0), (500, {}, 0), (200, {}, 0), retry_schedule="1,1,1")
    approve_one(world)
    world.work_until(lambda: outbox(world.svc)[0].status == "delivered")
    ids = {h["webhook-id"] for h, _b, _p in world.receiver.requests}
    assert len(world.receiver.requests) == 3 and len(ids) == 1
    with world.svc.db.read() as session:
        codes = session.scalars(
            select(DeliveryAttempt.status_code).order_by(DeliveryAttempt.id)
        ).all()
    assert codes == [500, 500, 200]


def test_retry_after_is_honoured(callback_world):
    world = callback_world((503, {"Retry-After": "1"}, 0), (200, {}, 0), retry_schedule="3600")
    approve_one(world)
    world.work_until(lambda: outbox(world.svc)[0].status == "delivered")
    assert len(world.receiver.requests) == 2


def test_410_dead_letters_at_once(callback_world):
    world = callback_world((410, {}, 0))
    approve_one(world)
    world.work_until(lambda: outbox(world.svc)[0].status == "dead")
    assert len(world.receiver.requests) == 1


def test_after_the_last_retry_the_callback_is_dead_lettered(callback_world):
    world = callback_world((500, {}, 0), retry_schedule="1")
    approve_one(world)
    world.work_until(lambda: outbox(world.svc)[0].status == "dead")
    assert len(world.receiver.requests) == 2
    assert outbox(world.svc)[0].last_error == "HTTP 500"


def test_a_redirect_is_a_failure_and_is_not_followed(callback_world, receiver_factory):
    elsewhere = receiver_factory((200, {}, 0))
    world = callback_world((302, {"Location": elsewhere.url}, 0), retry_schedule="3600")
    approve_one(world)
    world.work_until(lambda: outbox(world.svc)[0].attempts == 1)
    assert elsewhere.requests == []
    assert "redirects are not followed" in outbox(world.svc)[0].last_error


def test_a_slow_receiver_times_out_and_is_retried(callback_world):
    world = callback_world((200, {}, 2), (200, {}, 0), retry_schedule="1", delivery_deadline=1)
    approve_one(world)
    world.work_until(lambda: outbox(world.svc)[0].status == "delivered")
    with world.svc.db.read() as session:
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


def test_every_attempt_checks_the_address_again(callback_world, make_app):
    world = callback_world(retry_schedule="3600")
    with world.svc.db.write() as session:  # the URL changed (or its DNS did) since registration
        session.execute(update(Agent).values(callback_url="http://169.254.169.254/hook"))
    approve_one(world)
    strict = make_app(retry_schedule="3600")  # COUNTERSIGN_ALLOW_PRIVATE_CALLBACKS=0
    strict_rt = strict.extensions["countersign"]
    work_until(strict, strict_rt, lambda: outbox(strict_rt)[0].attempts == 1)
    assert outbox(strict_rt)[0].last_error.startswith("refused: 169.254.169.254")
    assert world.receiver.requests == []


def test_redis_down_at_decision_time_delays_the_callback_but_loses_nothing(
    callback_world, make_app
):
    world = callback_world()
    down = make_app(allow_private_callbacks=True, redis_url="redis://127.0.0.1:1/0")
    down_rt = down.extensions["countersign"]
    holder = reviewer(world.svc)
    d_id = world.agent.defer(refund()).get_json()["id"]
    claim_batch(down_rt, holder)
    decide(down_rt, holder, d_id, "approve")
    assert outbox(world.svc)[0].status == "pending"
    world.work_until(lambda: outbox(world.svc)[0].status == "delivered")
    assert len(world.receiver.requests) == 1


def test_retry_after_parsing():
    now = utcnow()
    assert delivery.retry_after_seconds("120", now) == 120
    assert delivery.retry_after_seconds("999999999", now) == 86400
    from email.utils import format_datetime

    later = format_datetime(now + timedelta(seconds=60), usegmt=True)
    assert 55 <= delivery.retry_after_seconds(later, now) <= 60
    assert delivery.retry_after_seconds("soon", now) is None


def test_an_overdue_deferral_expires_by_itself_and_the_agent_is_told(callback_world):
    world = callback_world()
    d_id = world.agent.defer(refund(expires_in=60)).get_json()["id"]
    from review.models import Deferral

    with world.svc.db.write() as session:
        session.execute(update(Deferral).values(expires_at=utcnow() - timedelta(seconds=1)))
    world.work_until(lambda: bool(outbox(world.svc)) and outbox(world.svc)[0].status == "delivered")
    resource = world.agent.get(f"/api/v1/deferrals/{d_id}").get_json()
    assert resource["status"] == "expired"
    assert resource["decision"]["decided_by"] == [] and resource["decision"]["valid_until"] is None
    [(headers, body, _path)] = world.receiver.requests
    assert json.loads(body)["data"]["status"] == "expired"


def test_owners_see_dead_letters_and_redeliver_them(callback_world):
    world = callback_world((410, {}, 0), (200, {}, 0))
    d_id = approve_one(world)
    world.work_until(lambda: outbox(world.svc)[0].status == "dead")
    owner = logged_in(world.app, "olivia")
    page = owner.get(f"/agents/{world.agent.slug}/deliveries?status=dead").get_data(as_text=True)
    event_id = outbox(world.svc)[0].id
    assert event_id in page and "dead letter" in page and "Redeliver" in page and "HTTP 410" in page
    response = owner.post(f"/agents/{world.agent.slug}/deliveries/{event_id}/redeliver")
    assert response.status_code == 302
    world.work_until(lambda: outbox(world.svc)[0].status == "delivered")
    assert [h["webhook-id"] for h, _b, _p in world.receiver.requests] == [event_id, event_id]
    with world.svc.db.read() as session:
        kinds = session.scalars(
            select(AuditEvent.event_type).where(AuditEvent.deferral_id == d_id)
        ).all()
    assert "callback.redelivery_requested" in kinds
    again = owner.post(f"/agents/{world.agent.slug}/deliveries/{event_id}/redeliver")
    assert "not a dead letter" in owner.get(again.location).get_data(as_text=True)


def test_only_owners_and_admins_redeliver_and_auditors_only_read(callback_world):
    world = callback_world((410, {}, 0))
    approve_one(world)
    world.work_until(lambda: outbox(world.svc)[0].status == "dead")
    event_id = outbox(world.svc)[0].id
    with world.svc.db.write() as session:
        create_user(session, "audrey", "auditor", "correct horse battery")
    deliveries = f"/agents/{world.agent.slug}/deliveries"
    other = logged_in(world.app, "rita")  # a reviewer who does not own the agent
    assert other.get(deliveries).status_code == 403
    assert other.post(f"{deliveries}/{event_id}/redeliver").status_code == 403
    auditor = logged_in(world.app, "audrey")
    page = auditor.get(deliveries).get_data(as_text=True)
    assert event_id in page and "Redeliver" not in page
    assert auditor.post(f"{deliveries}/{event_id}/redeliver").status_code == 403
    assert outbox(world.svc)[0].status == "dead"


def test_the_item_page_follows_its_callback_until_it_lands(callback_world):
    world = callback_world()
    d_id = approve_one(world)
    browser = logged_in(world.app, "rita")
    panel = browser.get(f"/deferrals/{d_id}/callbacks").get_data(as_text=True)
    assert 'hx-trigger="every 2s"' in panel and "not tried yet" in panel
    world.work_until(lambda: outbox(world.svc)[0].status == "delivered")
    panel = browser.get(f"/deferrals/{d_id}/callbacks").get_data(as_text=True)
    assert "hx-trigger" not in panel and "delivered" in panel and "HTTP 200" in panel
    assert 'id="callbacks"' in browser.get(f"/deferrals/{d_id}").get_data(as_text=True)
