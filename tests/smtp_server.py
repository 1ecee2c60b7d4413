"""A real SMTP server for tests (aiosmtpd), keeping what it received, or refusing as told."""

from __future__ import annotations

import email
import email.policy
import threading
from email.message import EmailMessage

from aiosmtpd.controller import Controller

from tests.helpers import free_port


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


def self_signed(folder) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and localhost, and its key: (cert path, key path)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


class TlsSmtpServer(SmtpServer):
    """aiosmtpd speaking TLS: STARTTLS required (`implicit=False`) or TLS from the first
    byte (smtps), with a login (user / password) that it accepts only over TLS."""

    def __init__(self, cert: str, key: str, *, implicit: bool, user: str, password: str):
        import ssl

        from aiosmtpd.smtp import AuthResult

        self.answer = "250 OK"
        self.lock = threading.Lock()
        self.received = []
        self.logins: list[str] = []
        self.port = free_port()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = auth_data.login == user.encode() and auth_data.password == password.encode()
            if ok:
                self.logins.append(user)
            return AuthResult(success=ok)

        options = {"authenticator": authenticator, "auth_require_tls": True}
        if implicit:
            # The whole connection is TLS; aiosmtpd only counts a STARTTLS session as TLS
            # when deciding whether to offer AUTH, so it is told not to ask.
            options.update(ssl_context=context, auth_require_tls=False)
        else:
            options.update(tls_context=context, require_starttls=True)
        self.controller = Controller(
            _Handler(self), hostname="127.0.0.1", port=self.port, **options
        )
        self.controller.start()
        self.implicit = implicit
