"""Outbound safety for callbacks: only public addresses, checked after DNS, then pinned.

A callback URL's host is resolved, and every address it resolves to must be globally
routable: loopback, private, link-local (cloud metadata at 169.254.169.254 included),
shared (100.64/10), multicast, reserved and unspecified addresses are refused, and so
are the IPv4 addresses hidden in IPv4-mapped, NAT64 (64:ff9b::/96), 6to4 and Teredo
IPv6 forms. The request then goes to the address that was checked (the Host header
and TLS SNI carry the name), so a second DNS answer cannot redirect it (no DNS
rebinding). Redirects are never followed. COUNTERSIGN_ALLOW_PRIVATE_CALLBACKS=1 lifts
the address check, for local demos and tests.

`post()` makes the request, bounded in time and size: one deadline covers the whole
attempt (DNS, connect, TLS, the request, the answer's headers and body). Every read
and send is given only the time left as its timeout, so a receiver that answers 200
with a long Content-Length and then trickles a byte every few seconds is cut off at
the deadline like one that never answers; at most ANSWER_CAP bytes of an answer are
read, then the connection is closed.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpcore

NAT64 = ipaddress.ip_network("64:ff9b::/96")
NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class OutboundRefused(Exception):
    """The URL may not be called: the message says why (safe to show to an admin)."""


@dataclass(frozen=True)
class Target:
    url: str  # the URL with the checked address in place of the name
    host: str  # the name, for the Host header and TLS SNI
    host_header: str
    address: str


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries, in the forms that route to it."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in NAT64 or ip in NAT64_LOCAL:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public(ip: IPAddress) -> bool:
    inner = embedded_ipv4(ip)
    if inner is not None and not is_public(inner):
        return False
    if isinstance(ip, ipaddress.IPv6Address) and (ip in NAT64 or ip in NAT64_LOCAL):
        return inner is not None and is_public(inner)
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def check_url(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OutboundRefused("callback URL must be an absolute http:// or https:// URL")
    if parts.username or parts.password:
        raise OutboundRefused("callback URL must not carry credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise OutboundRefused("callback URL has an invalid port") from None
    return parts.scheme, parts.hostname, port


def resolve(url: str, *, allow_private: bool) -> Target:
    """Check `url` and pick the address to connect to; OutboundRefused if it is not allowed."""
    scheme, host, port = check_url(url)
    try:
        literal = ipaddress.ip_address(host)
        addresses: list[IPAddress] = [literal]
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise OutboundRefused(f"cannot resolve {host}: {exc}") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(i[4][0].split("%")[0]) for i in infos))
    if not addresses:
        raise OutboundRefused(f"{host} has no address")
    if not allow_private:
        blocked = [str(a) for a in addresses if not is_public(a)]
        if blocked:
            raise OutboundRefused(
                f"{host} resolves to a non-public address ({', '.join(blocked)}); callbacks go "
                "only to public addresses (COUNTERSIGN_ALLOW_PRIVATE_CALLBACKS=1 allows others)"
            )
    address = addresses[0]
    parts = urlsplit(url)
    netloc_host = f"[{address}]" if address.version == 6 else str(address)
    default_port = port == (443 if scheme == "https" else 80)
    pinned = urlunsplit((scheme, f"{netloc_host}:{port}", parts.path or "/", parts.query, ""))
    host_header = host if default_port else f"{host}:{port}"
    return Target(pinned, host, host_header, str(address))


# --- the request ---------------------------------------------------------------------

ANSWER_CAP = 64 * 1024  # bytes of an answer read at most; the rest is never read
_attempt = threading.local()  # .deadline: time.monotonic() by which this thread's POST ends


@dataclass(frozen=True)
class Answer:
    """What came of one POST: the status code, or the error that stopped it."""

    code: int | None = None
    error: str | None = None
    retry_after: str | None = None
    body: bytes = b""  # the answer's first ANSWER_CAP bytes (AAP's receiver check reads it)


def _time_left(timeout: float | None, expired: type[Exception]) -> float | None:
    """The timeout for the next step: never past the attempt's deadline (`expired` at it)."""
    deadline = getattr(_attempt, "deadline", None)
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise expired("deadline exceeded")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read, send and TLS handshake ends by the deadline.

    A per-read timeout alone bounds nothing: a receiver that sends a byte every few
    seconds keeps each read short. Here each step is given only the time left.
    """

    def __init__(self, inner: httpcore.NetworkStream):
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _time_left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        sock = self._inner.get_extra_info("socket")
        try:  # one send at a time, each given the time left (a slow reader gets no more)
            while buffer:
                sock.settimeout(_time_left(timeout, httpcore.WriteTimeout))
                buffer = buffer[sock.send(buffer) :]
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.WriteError(str(exc)) from exc

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout=None
    ) -> httpcore.NetworkStream:
        left = _time_left(timeout, httpcore.ConnectTimeout)  # the handshake as a whole
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, left))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        left = _time_left(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(
            self._inner.connect_tcp(host, port, left, local_address, socket_options)
        )

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


_pool: httpcore.ConnectionPool | None = None


def _connections() -> httpcore.ConnectionPool:
    """Keep-alive connections shared by the worker's threads (no proxy from the
    environment: the checked address is the one connected to)."""
    global _pool
    if _pool is None:
        _pool = httpcore.ConnectionPool(
            max_connections=None,  # the delivery threads are the bound
            max_keepalive_connections=64,
            keepalive_expiry=5.0,
            network_backend=_DeadlineBackend(),
        )
    return _pool


def post(
    url: str, body: bytes, headers: dict[str, str], *, allow_private: bool, deadline: float
) -> Answer:
    """POST `body` to `url`, checked and pinned, all within `deadline` seconds.

    The deadline covers the whole attempt: the DNS answer (checked once it comes), the
    connection, TLS, the request, the answer's headers and up to ANSWER_CAP bytes of its
    body. When it passes, the connection is closed and the attempt is a failure.
    Redirects are not followed.
    """
    return _exchange("POST", url, body, headers, allow_private=allow_private, deadline=deadline)


def get(url: str, headers: dict[str, str], *, allow_private: bool, deadline: float) -> Answer:
    """GET `url` under the same rules as `post` (checked, pinned, one deadline, no
    redirects, at most ANSWER_CAP bytes read): an identity provider's keys, for instance."""
    return _exchange("GET", url, b"", headers, allow_private=allow_private, deadline=deadline)


def _exchange(
    method: str,
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    allow_private: bool,
    deadline: float,
) -> Answer:
    _attempt.deadline = time.monotonic() + deadline
    try:
        target = resolve(url, allow_private=allow_private)
        _time_left(None, httpcore.ConnectTimeout)  # a slow DNS answer spent the time
        extensions: dict[str, Any] = {"timeout": dict.fromkeys(_TIMEOUTS, deadline)}
        if target.url.startswith("https"):
            extensions["sni_hostname"] = target.host
        sent = {**headers, "Host": target.host_header, "User-Agent": USER_AGENT}
        with _connections().stream(
            method, target.url, headers=list(sent.items()), content=body, extensions=extensions
        ) as response:
            chunks, read = [], 0
            for chunk in response.iter_stream():  # each read ends by the deadline too
                chunks.append(chunk)
                read += len(chunk)
                if read >= ANSWER_CAP:
                    break  # closing the answer unread closes its connection
            retry_after = _header(response.headers, b"retry-after")
            return Answer(response.status, None, retry_after, b"".join(chunks)[:ANSWER_CAP])
    except OutboundRefused as exc:
        return Answer(error=f"refused: {exc}")
    except httpcore.TimeoutException:
        return Answer(error=f"timed out: deadline exceeded ({deadline:g} s for the attempt)")
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as exc:
        return Answer(error=f"{type(exc).__name__}: {str(exc)[:300]}")
    finally:
        _attempt.deadline = None


_TIMEOUTS = ("connect", "read", "write", "pool")
USER_AGENT = "Countersign-Webhooks/1"


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None
