"""E-mail over TLS: STARTTLS when the URL asks for it, smtps:// from the first byte, a
login only ever sent encrypted, and a certificate nobody vouches for refused."""

from __future__ import annotations

import pytest

from review.notifications.delivery import send_due
from review.notifications.planning import plan_due
from tests.smtp_server import TlsSmtpServer, self_signed
from tests.test_notify_email import critical, defer, rows


@pytest.fixture
def certificate(tmp_path, monkeypatch):
    cert, key = self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", cert)  # the system trust store, as OpenSSL reads it
    return cert, key


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "smtps"])
def test_mail_goes_over_tls_with_a_login(make_app, make_agent, people, certificate, implicit):
    server = TlsSmtpServer(*certificate, implicit=implicit, user="mailer", password="p@ss")
    try:
        url = (
            f"smtps://mailer:p%40ss@127.0.0.1:{server.port}"
            if implicit
            else f"smtp://mailer:p%40ss@127.0.0.1:{server.port}?starttls=1"
        )
        app = make_app(smtp_url=url, mail_from="cs@example.com", agent_rate=0)
        svc = app.extensions["countersign"]
        defer(svc, make_agent().on(app), critical())
        plan_due(svc)
        send_due(svc, wait_for_them=True)
        assert {r.last_error for r in rows(svc, channel="email")} == {None}
        assert sorted(m["To"] for m in server.messages()) == [
            "rita@example.com",
            "sam@example.com",
        ]
        assert server.logins == ["mailer", "mailer"]
    finally:
        server.close()


def test_plain_smtp_to_a_server_that_requires_starttls_is_refused_not_sent(
    make_app, make_agent, people, certificate
):
    server = TlsSmtpServer(*certificate, implicit=False, user="mailer", password="p@ss")
    try:
        app = make_app(
            smtp_url=f"smtp://127.0.0.1:{server.port}", mail_from="cs@example.com", agent_rate=0
        )
        svc = app.extensions["countersign"]
        defer(svc, make_agent().on(app), critical())
        plan_due(svc)
        send_due(svc, wait_for_them=True)
        assert server.messages() == []
        assert {r.status for r in rows(svc, channel="email")} == {"dead"}
        assert "530" in rows(svc, channel="email")[0].last_error  # "Must issue a STARTTLS"
    finally:
        server.close()


def test_a_certificate_nobody_vouches_for_is_not_trusted(
    make_app, make_agent, people, tmp_path, monkeypatch
):
    cert, key = self_signed(tmp_path)  # not in SSL_CERT_FILE
    server = TlsSmtpServer(cert, key, implicit=True, user="mailer", password="p@ss")
    try:
        app = make_app(
            smtp_url=f"smtps://mailer:p%40ss@127.0.0.1:{server.port}",
            mail_from="cs@example.com",
            agent_rate=0,
        )
        svc = app.extensions["countersign"]
        defer(svc, make_agent().on(app), critical())
        plan_due(svc)
        send_due(svc, wait_for_them=True)
        assert server.messages() == [] and server.logins == []
        [row, _] = rows(svc, channel="email")
        assert row.status == "pending" and "CERTIFICATE_VERIFY_FAILED" in row.last_error
    finally:
        server.close()
