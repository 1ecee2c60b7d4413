"""Standard Webhooks signatures, for requests from agents and callbacks to them.

Signing uses the `standardwebhooks` package. Verifying does not call its `verify`:
that decodes the body as UTF-8 first (a non-UTF-8 body must reach our JSON check and
answer 400, not 401) and lets malformed headers escape as ValueError or binascii
errors. So verification here works on the raw bytes, with the package's own HMAC
helper, and turns every malformed header into one `SignatureError`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from standardwebhooks.webhooks import Webhook, hmac_data

TOLERANCE_SECONDS = 300
MAX_HEADER = 4096


class SignatureError(Exception):
    """The request is not signed by this agent now; the reason is for logs only."""


@lru_cache(maxsize=1024)  # an agent's secret's key, decoded once a process
def _key(secret: str) -> bytes:
    encoded = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(encoded + "==")
    except (binascii.Error, ValueError) as exc:
        raise SignatureError("secret is not base64") from exc


def sign_headers(secret: str, msg_id: str, body: bytes | str, at: float | None = None) -> dict:
    """Headers for a signed request or callback (Standard Webhooks)."""
    stamp = int(time.time() if at is None else at)
    raw = body.encode() if isinstance(body, str) else body
    try:
        text = raw.decode()
    except UnicodeDecodeError:  # the package signs text only; sign the bytes the same way
        mac = hmac_data(_key(secret), f"{msg_id}.{stamp}.".encode() + raw)
        signature = "v1," + base64.b64encode(mac).decode()
    else:
        signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(stamp, UTC), text)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": signature,
    }


@dataclass(frozen=True)
class SignedRequest:
    """Well-formed, fresh signature headers; whether a secret made them is asked separately."""

    msg_id: str
    timestamp: str
    signatures: tuple[bytes, ...]

    def signed_by(self, secret: str, body: bytes) -> bool:
        signed = self.msg_id.encode() + b"." + self.timestamp.encode() + b"." + body
        expected = hmac.digest(_key(secret), signed, "sha256")  # standardwebhooks' hmac_data
        return any(hmac.compare_digest(expected, sig) for sig in self.signatures)

    def signed_by_any(self, secrets: Iterable[str], body: bytes) -> bool:
        return any(self.signed_by(secret, body) for secret in secrets)


def parse_headers(headers: Mapping[str, str], now: float | None = None) -> SignedRequest:
    """Check the three headers' form and the timestamp's freshness."""
    msg_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "")
    if not (msg_id and stamp and signatures):
        raise SignatureError("missing header")
    if max(len(msg_id), len(stamp), len(signatures)) > MAX_HEADER:
        raise SignatureError("header too long")
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
        raise SignatureError("timestamp is not whole seconds")
    now = time.time() if now is None else now
    if abs(now - int(stamp)) > TOLERANCE_SECONDS:
        raise SignatureError("timestamp outside tolerance")
    offered = []
    for item in signatures.split(" "):
        version, _, encoded = item.partition(",")
        if version != "v1" or not encoded:
            continue
        try:
            offered.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    if not offered:
        raise SignatureError("no v1 signature")
    return SignedRequest(msg_id, stamp, tuple(offered))


def verify(
    secrets: Iterable[str], headers: Mapping[str, str], body: bytes, now: float | None = None
) -> str:
    """Return the webhook-id when one of `secrets` signed `body` within the tolerance."""
    signed = parse_headers(headers, now)
    if not signed.signed_by_any(secrets, body):
        raise SignatureError("no matching signature")
    return signed.msg_id
