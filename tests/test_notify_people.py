"""Who is told: the routed group's members, people's own choices (channels, quiet hours,
a daily digest), the admins' page of deliveries, time to decision per channel, and the
worker's tick doing it all."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from approval_queue.worker import run_worker
from review.groups import add_member, create_group
from review.models import Deferral, User, utcnow
from review.notifications.delivery import send_due
from review.notifications.figures import (
    time_to_decision_by_channel,
    time_to_decision_by_reviewer,
)
from review.notifications.models import Notification
from review.notifications.planning import plan_due
from review.notifications.preferences import (
    BadPreferences,
    Preferences,
    preferences_of,
    save_preferences,
)
from review.observability.metrics import REGISTRY
from review.reviewing.claims import Holder, claim_batch
from review.reviewing.decisions import decide
from tests.helpers import audit_events, logged_in, wait_for
from tests.smtp_server import SmtpServer
from tests.test_notify_email import critical, defer, rows, sweep


@pytest.fixture
def smtp():
    server = SmtpServer()
    yield server
    server.close()


@pytest.fixture
def mail_app(make_app, smtp):
    return make_app(smtp_url=smtp.url, mail_from="cs@example.com", agent_rate=0)


def user_id(svc, name: str) -> int:
    with svc.db.read() as session:
        return session.scalar(select(User.id).where(User.username == name))


def test_a_deferral_routed_to_a_group_is_told_to_its_members_only(
    mail_app, make_agent, people, smtp
):
    svc = mail_app.extensions["countersign"]
    with svc.db.write() as session:
        create_group(session, "finance")
        add_member(session, "finance", "rita")
    d = defer(svc, make_agent().on(mail_app), critical())
    with svc.db.write() as session:
        session.execute(update(Deferral).where(Deferral.id == d.id).values(route_group="finance"))
    sweep(svc)
    assert [m["To"] for m in smtp.messages()] == ["rita@example.com"]


def test_quiet_hours_hold_a_message_until_they_end(mail_app, make_agent, people, smtp):
    svc = mail_app.extensions["countersign"]
    now = utcnow()
    start = (now - timedelta(hours=1)).strftime("%H:%M")
    end = (now + timedelta(hours=2)).strftime("%H:%M")
    with svc.db.write() as session:
        save_preferences(
            session,
            user_id(svc, "rita"),
            channels=["email"],
            digest=False,
            quiet_from=start,
            quiet_until=end,
            timezone="UTC",
        )
    defer(svc, make_agent().on(mail_app), critical())
    sweep(svc)
    assert [m["To"] for m in smtp.messages()] == ["sam@example.com"]
    [held] = rows(svc, channel="email", user_id=user_id(svc, "rita"))
    assert held.status == "pending" and held.attempts == 0
    ends = held.next_attempt_at
    assert ends > now + timedelta(hours=1, minutes=58) and ends.strftime("%H:%M") == end


def test_quiet_hours_span_midnight_in_the_persons_time_zone():
    prefs = Preferences(
        channels=("email",), quiet_from="22:00", quiet_until="07:00", timezone="Europe/Berlin"
    )
    # 23:30 in Berlin (UTC+1 in winter): quiet until 07:00 Berlin = 06:00 UTC next day.
    assert prefs.quiet_ends(datetime(2026, 11, 30, 22, 30, tzinfo=UTC)) == datetime(
        2026, 12, 1, 6, 0, tzinfo=UTC
    )
    assert prefs.quiet_ends(datetime(2026, 11, 30, 4, 0, tzinfo=UTC)) == datetime(
        2026, 11, 30, 6, 0, tzinfo=UTC
    )
    assert prefs.quiet_ends(datetime(2026, 11, 30, 12, 0, tzinfo=UTC)) is None


def test_someone_who_turned_email_off_gets_none(mail_app, make_agent, people, smtp):
    svc = mail_app.extensions["countersign"]
    with svc.db.write() as session:
        save_preferences(
            session,
            user_id(svc, "sam"),
            channels=[],
            digest=False,
            quiet_from=None,
            quiet_until=None,
            timezone="UTC",
        )
    defer(svc, make_agent().on(mail_app), critical())
    sweep(svc)
    assert [m["To"] for m in smtp.messages()] == ["rita@example.com"]


def test_the_settings_page_keeps_a_persons_notification_choices(mail_app, people):
    svc = mail_app.extensions["countersign"]
    rita = logged_in(mail_app, "rita")
    page = rita.get("/settings").get_data(as_text=True)
    assert "Notifications" in page and 'name="channel" value="email" checked' in page
    answer = rita.post(
        "/settings/notifications",
        {
            "digest": "on",
            "quiet_from": "22:00",
            "quiet_until": "07:00",
            "timezone": "Europe/Berlin",
        },
    )
    assert answer.status_code == 302
    with svc.db.read() as session:
        prefs = preferences_of(session, user_id(svc, "rita"))
    assert prefs == Preferences((), True, "22:00", "07:00", "Europe/Berlin")
    assert audit_events(svc, "user.settings_changed")[-1].actor_id == "rita"
    page = rita.get("/settings").get_data(as_text=True)
    assert 'name="channel" value="email" checked' not in page and 'value="22:00"' in page

    bad = rita.post(
        "/settings/notifications",
        {"channel": "email", "quiet_from": "25:00", "quiet_until": "07:00", "timezone": "UTC"},
    )
    assert bad.status_code == 400
    assert "quiet hours are HH:MM" in bad.get_data(as_text=True)
    with svc.db.read() as session:  # nothing of the bad form was kept
        assert preferences_of(session, user_id(svc, "rita")).quiet_from == "22:00"


def test_bad_preferences_are_refused_whole(app, svc, people):
    with svc.db.write() as session:
        with pytest.raises(BadPreferences, match="unknown time zone"):
            save_preferences(
                session,
                user_id(svc, "rita"),
                channels=["email"],
                digest=False,
                quiet_from="22:00",
                quiet_until="07:00",
                timezone="Mars/Olympus",
            )
        with pytest.raises(BadPreferences, match="no such channel"):
            save_preferences(
                session,
                user_id(svc, "rita"),
                channels=["pigeon"],
                digest=False,
                quiet_from=None,
                quiet_until=None,
                timezone="UTC",
            )


def test_a_daily_digest_goes_once_a_day_to_who_asked(make_app, make_agent, people, smtp):
    app = make_app(
        smtp_url=smtp.url, mail_from="cs@example.com", notify_digest_hour=0, notify_level="none"
    )
    svc = app.extensions["countersign"]
    with svc.db.write() as session:
        save_preferences(
            session,
            user_id(svc, "sam"),
            channels=[],
            digest=True,
            quiet_from=None,
            quiet_until=None,
            timezone="UTC",
        )
    agent = make_agent().on(app)
    ids = [defer(svc, agent, critical(summary=f"Refund {n}")).id for n in range(2)]
    sweep(svc)
    sweep(svc)
    [mail] = smtp.messages()
    assert mail["To"] == "sam@example.com"
    assert mail["Subject"] == "[Countersign] Daily digest: 2 waiting"
    body = mail.get_content()
    assert "Waiting: critical 2" in body and all(f"/deferrals/{i}" in body for i in ids)


def test_admins_see_dead_letters_and_retry_them(make_app, make_agent, people, smtp):
    from tests.smtp_server import dead_smtp_url

    app = make_app(smtp_url=dead_smtp_url(), mail_from="cs@example.com", notify_retry_schedule="1")
    svc = app.extensions["countersign"]
    defer(svc, make_agent().on(app), critical())
    plan_due(svc)

    def dead():
        send_due(svc, wait_for_them=True)
        return {r.status for r in rows(svc, channel="email")} == {"dead"}

    wait_for(dead, timeout=15)
    ada = logged_in(app, "ada")
    page = ada.get("/admin/notifications?status=dead").get_data(as_text=True)
    assert "dead letter" in page and "ConnectionRefusedError" in page and "Retry" in page
    assert "rita &lt;rita@example.com&gt;" in page
    assert logged_in(app, "rita").get("/admin/notifications").status_code == 403
    target = rows(svc, channel="email")[0]
    answer = ada.post(f"/admin/notifications/{target.id}/retry", {})
    assert answer.status_code == 302
    [again] = rows(svc, id=target.id)
    assert again.status == "pending" and again.attempts == 0
    assert audit_events(svc, "notification.retry_requested")[-1].actor_id == "ada"


def test_time_to_decision_is_measured_per_channel(mail_app, make_agent, people, smtp):
    svc = mail_app.extensions["countersign"]
    d = defer(svc, make_agent().on(mail_app), critical())
    sweep(svc)
    with svc.db.write() as session:  # the mails went out ten minutes before the decision
        session.execute(update(Notification).values(finished_at=utcnow() - timedelta(minutes=10)))
    before = (
        REGISTRY.get_sample_value(
            "countersign_notified_decision_seconds_count", {"channel": "email"}
        )
        or 0
    )
    rita = Holder(user_id(svc, "rita"), "rita", frozenset({"rita"}))
    assert claim_batch(svc, rita) == [d.id]
    decide(svc, rita, d.id, "reject", "not this one", undo_seconds=0)
    wait_for(lambda: _decided(svc, d.id))
    after = REGISTRY.get_sample_value(
        "countersign_notified_decision_seconds_count", {"channel": "email"}
    )
    assert after == before + 1
    with svc.db.read() as session:
        figures = time_to_decision_by_channel(session, since=utcnow() - timedelta(hours=1))
        mine = time_to_decision_by_channel(
            session, since=utcnow() - timedelta(hours=1), reviewer="rita"
        )
        theirs = time_to_decision_by_channel(
            session, since=utcnow() - timedelta(hours=1), reviewer="sam"
        )
        everyone = time_to_decision_by_reviewer(session, since=utcnow() - timedelta(hours=1))
    assert figures["email"].decisions == 1
    assert 590 < figures["email"].median_seconds < 700
    assert mine["email"].decisions == 1 and theirs == {}
    assert everyone == {"rita": mine}  # sam's e-mail is not rita's


def _decided(svc, deferral_id: str) -> bool:
    with svc.db.read() as session:
        return session.get(Deferral, deferral_id).status == "rejected"


def test_the_worker_tick_plans_and_sends(mail_app, make_agent, people, smtp, redis_client):
    svc = mail_app.extensions["countersign"]
    defer(svc, make_agent().on(mail_app), critical())
    with mail_app.app_context():
        run_worker(svc, burst=True)  # one tick of upkeep, then the queues
    wait_for(lambda: len(smtp.messages()) == 2, message="the tick's e-mails did not arrive")


def test_a_reminder_goes_once_before_expiry(make_app, make_agent, people, smtp):
    app = make_app(
        smtp_url=smtp.url,
        mail_from="cs@example.com",
        notify_remind_before=600,
        escalate_after=86400,
        agent_rate=0,
    )
    svc = app.extensions["countersign"]
    d = defer(svc, make_agent().on(app), critical(expires_in=3600))
    sweep(svc)
    assert len(smtp.messages()) == 2  # told it waits; an hour left: no reminder yet
    with svc.db.write() as session:
        session.execute(
            update(Deferral)
            .where(Deferral.id == d.id)
            .values(expires_at=utcnow() + timedelta(minutes=5))
        )
    assert sweep(svc) == 2
    assert sweep(svc) == 0
    reminders = smtp.messages()[2:]
    assert sorted(m["To"] for m in reminders) == ["rita@example.com", "sam@example.com"]
    assert reminders[0]["Subject"].startswith("[Countersign] expires in 4 min: Refund $740")
