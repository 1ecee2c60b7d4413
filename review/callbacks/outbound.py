"""Outbound safety for callbacks: only public addresses, checked after DNS, then pinned.

A callback URL's host is resolved, and every address it resolves to must be globally
routable: loopback, private, link-local (cloud metadata at 169.254.169.254 included),
shared (100.64/10), multicast, reserved and unspecified addresses are refused, and so
are the IPv4 addresses hidden in IPv4-mapped, NAT64 (64:ff9b::/96), 6to4 and Teredo
IPv6 forms. The request then goes to the address that was checked (the Host header
and TLS SNI carry the name), so a second DNS answer cannot redirect it (no DNS
rebinding). Redirects are never followed. COUNTERSIGN_ALLOW_PRIVATE_CALLBACKS=1 lifts
the address check, for local demos and tests.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

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
