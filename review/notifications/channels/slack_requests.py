"""Slack's interaction requests: proved to come from Slack, once, recently.

Slack signs each request with the app's signing secret
(https://docs.slack.dev/authentication/verifying-requests-from-slack/):
`X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:{X-Slack-Request-Timestamp}:{raw body}">`.
A request is accepted when the signature matches (slack_sdk's SignatureVerifier
computes and compares it in constant time), its timestamp is within MAX_AGE_SECONDS of
our clock, and its signature was not accepted before: each accepted signature is kept
in Redis (SET NX) for longer than a timestamp stays acceptable, so a captured request
sent again is refused. When Redis cannot say whether it is new, the request is refused
too (fail closed: Slack shows the person an error and nothing is decided).

The body is `payload=<JSON>`, form-encoded. Anything wrong (a missing or malformed
header, a bad signature, an old timestamp, a replay) is one `BadSlackRequest`, with no
hint of which part failed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

import redis
from slack_sdk.signature import SignatureVerifier

from review import redis_keys

MAX_AGE_SECONDS = 300
SEEN_SECONDS = 2 * MAX_AGE_SECONDS + 60  # longer than a timestamp is acceptable either way
MAX_BODY_BYTES = 1024 * 1024


class BadSlackRequest(Exception):
    """Not a request this service accepts as Slack's (401)."""


class MalformedPayload(Exception):
    """Signed by Slack, but not an interaction payload we can read (400)."""


def verify(
    signing_secret: str,
    client: redis.Redis,
    body: bytes,
    headers: Mapping[str, str],
    now: float | None = None,
) -> None:
    """Raise BadSlackRequest unless `body` and `headers` are a fresh, first-seen request
    that Slack signed with `signing_secret`."""
    now = time.time() if now is None else now
    timestamp = (headers.get("X-Slack-Request-Timestamp") or "").strip()
    signature = (headers.get("X-Slack-Signature") or "").strip()
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise BadSlackRequest
    if not signature.startswith("v0=") or len(signature) != 67 or not signature.isascii():
        raise BadSlackRequest
    if abs(now - int(timestamp)) > MAX_AGE_SECONDS:
        raise BadSlackRequest
    try:
        body.decode("utf-8")  # Slack's bodies are UTF-8; the verifier decodes (and would raise)
    except UnicodeDecodeError:
        raise BadSlackRequest from None

    class At:  # the verifier's clock: ours (tests move it)
        @staticmethod
        def now() -> float:
            return now

    verifier = SignatureVerifier(signing_secret, clock=At())  # type: ignore[arg-type]
    if not verifier.is_valid(body=body, timestamp=timestamp, signature=signature):
        raise BadSlackRequest
    try:
        first = client.set(redis_keys.slack_signature(signature), "1", nx=True, ex=SEEN_SECONDS)
    except redis.RedisError:
        raise BadSlackRequest from None
    if not first:
        raise BadSlackRequest


def payload_of(body: bytes) -> dict[str, Any]:
    """The interaction payload: the JSON object in the form field `payload`."""
    try:
        fields = parse_qs(body.decode("utf-8"), strict_parsing=True, max_num_fields=20)
        [raw] = fields["payload"]
        payload = json.loads(raw)
    except (UnicodeDecodeError, ValueError, KeyError):
        raise MalformedPayload("no payload") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
        raise MalformedPayload("payload is not an interaction")
    return payload


def text_at(payload: Any, *path: str) -> str:
    """A string inside the payload ("" when absent or not a string)."""
    for key in path:
        payload = payload.get(key) if isinstance(payload, dict) else None
    return payload if isinstance(payload, str) else ""
