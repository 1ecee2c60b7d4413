"""Standard Webhooks signatures: on requests to the service, and on its callbacks.

Signing uses the `standardwebhooks` package (request bodies are JSON text). Checking a
callback does not use its `Webhook.verify`, which decodes the body before checking it and
lets malformed headers escape as ValueError: here the HMAC is taken over the raw bytes and
every malformed header is one `BadSignature`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook, hmac_data

TOLERANCE_SECONDS = 300  # as the service: a timestamp further off than this is refused
MAX_HEADER = 4096


class BadSignature(Exception):
    """The callback is not signed by this secret now (the message is for logs)."""


def new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def signed_headers(secret: str, msg_id: str, body: bytes, at: float | None = None) -> dict:
    """The three webhook-* headers for a request with this body (GET: an empty body)."""
    stamp = int(time.time() if at is None else at)
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(stamp, UTC), body.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(stamp), "webhook-signature": signature}


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret."""
    if not isinstance(secret, str) or not secret:
        raise BadSignature("the secret is not a whsec_ string")
    try:
        key = base64.b64decode(secret.removeprefix("whsec_") + "==")
    except (binascii.Error, ValueError):
        raise BadSignature("the secret is not base64") from None
    if not key:
        raise BadSignature("the secret is empty")
    return key


def checked_message_id(
    secrets: Iterable[str], headers: Mapping[str, str], body: bytes, now: float | None = None
) -> str:
    """The webhook-id, when one of `secrets` signed `body` within the tolerance."""
    keys = [secret_key(secret) for secret in secrets]
    msg_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    offered = headers.get("webhook-signature", "")
    if not (msg_id and stamp and offered):
        raise BadSignature("a webhook-* header is missing")
    if max(len(msg_id), len(stamp), len(offered)) > MAX_HEADER:
        raise BadSignature("a webhook-* header is too long")
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
        raise BadSignature("webhook-timestamp is not whole seconds")
    if abs((time.time() if now is None else now) - int(stamp)) > TOLERANCE_SECONDS:
        raise BadSignature("webhook-timestamp is too far from now")
    try:
        signed = msg_id.encode() + b"." + stamp.encode() + b"." + body
    except UnicodeEncodeError:
        raise BadSignature("webhook-id is not Unicode text") from None
    expected = [hmac_data(key, signed) for key in keys]
    for item in offered.split(" "):
        version, _, encoded = item.partition(",")
        if version != "v1" or not encoded:
            continue
        try:
            signature = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if any(hmac.compare_digest(mac, signature) for mac in expected):
            return msg_id
    raise BadSignature("no signature matches")
