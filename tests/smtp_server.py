"""A real SMTP server for tests (aiosmtpd), keeping what it received, or refusing as told."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from email.message import EmailMessage

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Handler:
    def __init__(self, server: SmtpServer):
        self.server = server

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.server.answer.startswith(("4", "5")):
            return self.server.answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.server.lock:
            self.server.received.append(
                (envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content))
            )
        return "250 Message accepted"


class SmtpServer:
    """aiosmtpd on 127.0.0.1; `answer` ("451 ...", "550 ...") refuses recipients."""

    def __init__(self, answer: str = "250 OK"):
        self.answer = answer
        self.lock = threading.Lock()
        self.received: list[tuple[str, list[str], bytes]] = []
        self.port = free_port()
        self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def messages(self) -> list[EmailMessage]:
        with self.lock:
            raw = [content for _, _, content in self.received]
        return [email.message_from_bytes(r, policy=email.policy.default) for r in raw]

    def close(self) -> None:
        self.controller.stop()


def dead_smtp_url() -> str:
    """An address where nothing listens (the connection is refused at once)."""
    return f"smtp://127.0.0.1:{free_port()}"
