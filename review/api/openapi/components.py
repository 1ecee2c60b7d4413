"""The document's shared parts: the Standard Webhooks headers (on every signed request
and every callback, PROTOCOL.md section 2), Retry-After, and the signature scheme."""

from __future__ import annotations

from typing import Any

from review.api.openapi import patterns
from review.signing import MAX_HEADER, TOLERANCE_SECONDS

PARAMETERS: dict[str, Any] = {
    "WebhookId": {
        "name": "webhook-id",
        "in": "header",
        "required": True,
        "description": "a unique message id chosen by the sender. For a deferral's creation "
        "it is the idempotency key; on a callback it is the event id, the same on every "
        "retry.",
        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_HEADER},
    },
    "WebhookTimestamp": {
        "name": "webhook-timestamp",
        "in": "header",
        "required": True,
        "description": f"Unix seconds; refused when more than {TOLERANCE_SECONDS} s away "
        "from the receiver's clock",
        "schema": {"type": "string", "pattern": patterns.UNIX_SECONDS},
    },
    "WebhookSignature": {
        "name": "webhook-signature",
        "in": "header",
        "required": True,
        "description": "`v1,<base64 HMAC-SHA256 of '{webhook-id}.{webhook-timestamp}."
        "{body}'>` with the agent's whsec_ secret (a GET signs an empty body); several "
        "space-separated signatures may be sent while a secret is rotated",
        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_HEADER},
    },
}

HEADERS: dict[str, Any] = {
    "RetryAfter": {
        "description": "whole seconds to wait before trying again",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}

SECURITY_SCHEMES: dict[str, Any] = {
    "standardWebhooks": {
        "type": "apiKey",
        "in": "header",
        "name": "webhook-signature",
        "description": "Standard Webhooks: the webhook-id, webhook-timestamp and "
        "webhook-signature headers, signed with the agent's secret (PROTOCOL.md section 2).",
    }
}
