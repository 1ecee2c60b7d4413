"""Notification delivery like callbacks: the signed webhook verified by the standardwebhooks
package in a real HTTP receiver; a broken SMTP server retried, then dead-lettered, while
the other channels go on; follow-ups when a deferral ends; the webhook secret command."""

from __future__ import annotations

import json
import socket
import threading

import pytest
from sqlalchemy import select
from standardwebhooks import Webhook

from review.models import Deferral
from review.notifications.delivery import NotDead, retry_dead, send_due
from review.notifications.models import Notification
from review.notifications.planning import plan_due
from review.notifications.secret import webhook_secret
from tests.helpers import wait_for
from tests.smtp_server import SmtpServer, dead_smtp_url
from tests.test_notify_email import PUBLIC, critical, defer, rows, sweep


@pytest.fixture
def smtp():
    server = SmtpServer()
    yield server
    server.close()


class SilentSmtp:
    """Accepts TCP connections and never says a word: every attempt waits out its deadline."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"smtp://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held = []
        self.thread = threading.Thread(target=self._hold, daemon=True)
        self.thread.start()

    def _hold(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self):
        self.sock.close()
        for conn in self.held:
            conn.close()


def test_a_critical_deferral_makes_one_signed_webhook_the_package_verifies(
    make_app, make_agent, people, receiver_factory, runner
):
    receiver = receiver_factory()
    app = make_app(notify_webhook_url=receiver.url, public_url=PUBLIC, agent_rate=0)
    svc = app.extensions["countersign"]
    d = defer(svc, make_agent().on(app), critical(summary='Refund "$740" <b>now</b>'))
    sweep(svc)
    sweep(svc)
    [(headers, body, _)] = receiver.requests
    secret = app.test_cli_runner().invoke(args=["notify", "secret"]).output.strip()
    assert secret.startswith("whsec_") and secret == webhook_secret(svc)
    payload = Webhook(secret).verify(body, {k.lower(): v for k, v in headers.items()})
    assert payload["type"] == "deferral.waiting"
    [item] = payload["data"]["deferrals"]
    assert item["id"] == d.id and item["url"] == f"{PUBLIC}/deferrals/{d.id}"
    assert item["summary"] == 'Refund "$740" <b>now</b>'  # JSON carries it; the receiver escapes
    assert item["risk"]["level"] == "critical"
    [row] = rows(svc, channel="webhook")
    assert headers["webhook-id"] == row.id and row.provider_ref == "HTTP 200"


def test_the_webhook_hears_the_outcome_when_the_deferral_ends(
    make_app, make_agent, people, receiver_factory
):
    receiver = receiver_factory()
    app = make_app(notify_webhook_url=receiver.url, agent_rate=0)
    svc = app.extensions["countersign"]
    agent = make_agent().on(app)
    d = defer(svc, agent, critical())
    sweep(svc)
    assert agent.post_json(f"/api/v1/deferrals/{d.id}/cancel", {"reason": "x"}).status_code == 200
    send_due(svc, wait_for_them=True)
    types = [json.loads(body)["type"] for _, body, _ in receiver.requests]
    assert types == ["deferral.waiting", "deferral.decided"]
    last = json.loads(receiver.requests[-1][1])
    assert last["data"]["deferrals"][0]["status"] == "cancelled"


def test_a_dead_smtp_server_is_retried_then_dead_lettered_and_an_admin_retries_it(
    make_app, make_agent, people, smtp
):
    app = make_app(smtp_url=dead_smtp_url(), mail_from="cs@example.com", notify_retry_schedule="1")
    svc = app.extensions["countersign"]
    defer(svc, make_agent().on(app), critical())
    plan_due(svc)
    send_due(svc, wait_for_them=True)
    first = rows(svc, channel="email")
    # Kept for its retry, 1 s later; the sweep looks again for retries due once its
    # attempts are in, so on a slow machine that retry can fall in this sweep too.
    assert {(r.status, r.attempts) for r in first} <= {("pending", 1), ("dead", 2)}
    assert all("ConnectionRefusedError" in r.last_error for r in first)

    def all_dead():
        send_due(svc, wait_for_them=True)
        return {r.status for r in rows(svc, channel="email")} == {"dead"}

    wait_for(all_dead, timeout=15, message="the e-mails were not dead-lettered")
    assert {r.attempts for r in rows(svc, channel="email")} == {2}

    # The server is back: an admin retries a dead letter and it goes out.
    fixed = make_app(smtp_url=smtp.url, mail_from="cs@example.com")
    fixed_svc = fixed.extensions["countersign"]
    dead = rows(svc, channel="email")[0]
    retry_dead(fixed_svc, dead.id, by="ada")
    with pytest.raises(NotDead):
        retry_dead(fixed_svc, dead.id, by="ada")
    send_due(fixed_svc, wait_for_them=True)
    assert [m["To"] for m in smtp.messages()] == [dead.address]


def test_a_silent_smtp_server_does_not_hold_up_the_webhook(
    make_app, make_agent, people, receiver_factory
):
    silent = SilentSmtp()
    receiver = receiver_factory()
    try:
        app = make_app(
            smtp_url=silent.url,
            mail_from="cs@example.com",
            notify_webhook_url=receiver.url,
            notify_deadline=8,
            agent_rate=0,
        )
        svc = app.extensions["countersign"]
        agent = make_agent().on(app)
        for n in range(3):  # below the batch size: one message per deferral per reviewer
            defer(svc, agent, critical(summary=f"Refund {n}"))
        plan_due(svc)
        started = send_due(svc)  # returns at once: sending runs on its own threads
        assert started >= 3
        wait_for(lambda: len(receiver.requests) == 3, timeout=10)
        # The webhooks went out while the e-mails were still waiting for the silent server.
        assert {r.attempts for r in rows(svc, channel="email")} == {0}

        def emails_tried():
            send_due(svc)  # as the worker's tick does: the next ones, as the share frees up
            return all(r.attempts >= 1 for r in rows(svc, channel="email"))

        wait_for(
            emails_tried,
            timeout=45,
            message="the e-mail attempts did not end at their deadline",
        )
        assert {r.status for r in rows(svc, channel="webhook")} == {"delivered"}
    finally:
        silent.close()


def test_the_secret_command_keeps_one_secret_until_rotated(app, runner, svc):
    first = runner.invoke(args=["notify", "secret"]).output.strip()
    assert runner.invoke(args=["notify", "secret"]).output.strip() == first
    rotated = runner.invoke(args=["notify", "secret", "--rotate"]).output.strip()
    assert rotated != first and rotated.startswith("whsec_")
    with svc.db.read() as session:
        from review.notifications.models import ServiceSecret

        [row] = session.scalars(select(ServiceSecret)).all()
        assert rotated not in row.ciphertext  # sealed at rest
    assert Deferral  # noqa: B018
    assert Notification  # noqa: B018
