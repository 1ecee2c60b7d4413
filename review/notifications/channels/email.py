"""E-mail over SMTP (the standard library's smtplib), one message per person.

COUNTERSIGN_SMTP_URL: `smtp://[user:pass@]host[:port]` (port 25; plain, or STARTTLS with
`?starttls=1`, which then must succeed: no silent fallback to plain), or
`smtps://[user:pass@]host[:port]` (TLS from the first byte, port 465). User and password
are percent-decoded. Certificates are checked against the system's trust store.
COUNTERSIGN_MAIL_FROM is the sender. A person's address is set with `users create ...
--email ADDR` or `users set-email NAME ADDR`.

The message is plain text (no HTML: nothing an agent wrote can become markup or a
disguised link); each says what it is, and links to `<COUNTERSIGN_PUBLIC_URL>/deferrals/<id>`
(a GET only shows the item; deciding takes a logged-in person's POST). Agent text is
untrusted: in the Subject it is one line (controls, line breaks and hidden characters
removed, then cut to 80 characters) and goes through the email package's header folding,
so a CR/LF in it cannot start a header; in the body hidden characters are shown as
`⟨U+202E⟩` (review/notifications/text.py) and every agent field is labelled as the agent's.

Failures: 4xx answers and no answer (refused connection, timeout) are retried; 5xx
answers (a refused recipient or sender, failed authentication) are dead letters at once.
E-mail does not carry `deferral.decided`: the link shows the outcome, and a second mail
per decision would double every inbox.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from urllib.parse import unquote, urlsplit

from review.models import User
from review.notifications import kinds
from review.notifications.channels.base import Message, Refused, TryLater
from review.notifications.text import render_text, subject_line
from review.services import Services
from review.settings import Settings

# No folding of headers under RFC 5322's hard limit: Python's folder puts some ordinary
# subjects ("expires in 4 min: ...") wholly on a continuation line, which readers then
# show with a leading space. Our subjects are one line of at most ~130 characters.
MAIL_POLICY = policy.default.clone(max_line_length=998)


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    tls: bool  # smtps://: TLS from the first byte
    starttls: bool
    user: str | None
    password: str | None


def smtp_server(url: str) -> SmtpServer:
    parts = urlsplit(url)
    tls = parts.scheme == "smtps"
    return SmtpServer(
        host=parts.hostname or "",
        port=parts.port or (465 if tls else 25),
        tls=tls,
        starttls=parts.query.lower() in ("starttls=1", "starttls=true"),
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def valid_address(text: str | None) -> str | None:
    """The address if it is one plain addr-spec (no display name, no line breaks)."""
    if not text or any(c in text for c in "\r\n\0") or len(text) > 254:
        return None
    name, addr = parseaddr(text)
    if name or addr != text or addr.count("@") != 1:
        return None
    local, domain = addr.split("@")
    return addr if local and ("." in domain.strip(".") or domain == "localhost") else None


class EmailChannel:
    name = "email"
    personal = True
    kinds = frozenset(
        {
            kinds.WAITING,
            kinds.ESCALATED,
            kinds.EXPIRING,
            kinds.DIGEST,
            kinds.AGENT_KILLED,
            kinds.AGENT_REVIVED,
        }
    )

    def configured(self, settings: Settings) -> bool:
        return bool(settings.smtp_url and settings.mail_from)

    def address_of(self, user: User) -> str | None:
        return valid_address(user.email)

    def compose(self, settings: Settings, message: Message) -> EmailMessage:
        mail = EmailMessage(policy=MAIL_POLICY)
        mail["From"] = settings.mail_from
        assert message.recipient is not None
        mail["To"] = Address(addr_spec=message.recipient.address)
        mail["Subject"] = subject_line(message)
        mail["Date"] = format_datetime(message.created_at)
        mail["Message-ID"] = f"<{message.id}@countersign>"
        mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to this
        mail["X-Countersign-Kind"] = message.kind
        if len(message.deferrals) == 1:
            mail["X-Countersign-Deferral"] = message.deferrals[0].id
        mail.set_content(render_text(message))
        return mail

    def deliver(self, svc: Services, message: Message) -> str:
        settings = svc.settings
        if message.recipient is None or not valid_address(message.recipient.address):
            raise Refused("no valid e-mail address")
        mail = self.compose(settings, message)
        server = smtp_server(settings.smtp_url)
        timeout = settings.notify_deadline
        try:
            if server.tls:
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    server.host, server.port, timeout=timeout, context=ssl.create_default_context()
                )
            else:
                smtp = smtplib.SMTP(server.host, server.port, timeout=timeout)
            with smtp:
                if server.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if server.user:
                    smtp.login(server.user, server.password or "")
                smtp.send_message(mail)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            error = f"recipient refused: {codes}"
            raise (
                TryLater(error) if all(400 <= c < 500 for c in codes) else Refused(error)
            ) from None
        except smtplib.SMTPResponseException as exc:
            error = f"SMTP {exc.smtp_code}: {_text(exc.smtp_error)}"
            raise (Refused(error) if exc.smtp_code >= 500 else TryLater(error)) from None
        except ssl.SSLError as exc:
            raise TryLater(f"TLS: {exc}") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise TryLater(f"{type(exc).__name__}: {str(exc)[:200]}") from None
        return mail["Message-ID"]


def _text(raw: bytes | str) -> str:
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    return text[:200]


CHANNEL = EmailChannel()
