"""The request bodies' schemas, the ones requests are validated against (by
review/api/schema.py: there is no second copy), and JsonValue, the JSON they may carry.

They are JSON Schema 2020-12, as OpenAPI 3.1 uses it; schemas.py names them for the
document `GET /api/v1/openapi.json` serves.
"""

from __future__ import annotations

from typing import Any

from review.api.openapi import patterns

MAX_SAFE_INTEGER = 2**53 - 1  # RFC 8785 (the action digest, the audit chain) is exact to here


def _text(low: int, high: int) -> dict[str, Any]:
    return {"type": "string", "minLength": low, "maxLength": high, "pattern": patterns.NO_NUL}


HTTP_URL = {
    "type": "string",
    "maxLength": 2000,
    "pattern": patterns.HTTP_URL,
    "description": "an absolute http:// or https:// URL",
}

# Any JSON the service can store and canonicalise (review/api/jsonbody.py checks it over
# every request body before the schema): strings without NUL, wherever they are, and
# numbers within ±(2^53 - 1) however they are written (JSON does not tell 1e16 from
# 10000000000000000, and every double beyond that bound is a whole number). Each keyword
# applies to its own type only, so one schema describes every kind of value.
JSON_VALUE: dict[str, Any] = {
    "description": "any JSON value: strings without NUL, numbers within ±(2^53 - 1)",
    "pattern": patterns.NO_NUL,
    "minimum": -MAX_SAFE_INTEGER,
    "maximum": MAX_SAFE_INTEGER,
    "propertyNames": {"pattern": patterns.NO_NUL},
    "additionalProperties": {"$ref": "#/components/schemas/JsonValue"},
    "items": {"$ref": "#/components/schemas/JsonValue"},
}
ANY_JSON = {"$ref": "#/components/schemas/JsonValue"}
JSON_OBJECT = {"type": "object", **ANY_JSON}

DEFERRAL_REQUEST: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["action", "summary", "on_behalf_of"],
    "properties": {
        "action": {
            "type": "object",
            "additionalProperties": False,
            "required": ["tool", "args"],
            "properties": {"tool": _text(1, 200), "args": JSON_OBJECT},
            "description": "what the agent wants to do",
        },
        "summary": {**_text(1, 500), "description": "one line a reviewer reads first"},
        "on_behalf_of": {
            "type": "object",
            "additionalProperties": False,
            "required": ["id"],
            "properties": {
                "id": _text(1, 200),
                "display_name": _text(0, 200),
                "token": {
                    **_text(1, 16384),
                    "description": "a JWT a trusted identity provider issued to the principal "
                    "(PROTOCOL.md section 17); verified, never stored",
                },
            },
            "description": "the human principal; `system:<name>` for unattended runs",
        },
        "intent": {**_text(0, 4000), "description": "what the human asked for; untrusted"},
        "rationale": {**_text(0, 10000), "description": "shown to reviewers as untrusted"},
        "before": {**ANY_JSON, "description": "state of the target before the action"},
        "after": {**ANY_JSON, "description": "state of the target after the action"},
        "resource": {
            "type": "object",
            "additionalProperties": False,
            "required": ["type", "id"],
            "properties": {"type": _text(1, 200), "id": _text(1, 200)},
        },
        "risk": {
            "type": "object",
            "additionalProperties": False,
            "required": ["score"],
            "properties": {
                "score": {"type": "integer", "minimum": 0, "maximum": 100},
                "reasons": {"type": "array", "maxItems": 50, "items": _text(0, 500)},
            },
            "description": "the agent's own claim; it can raise the server's score, not lower it",
        },
        "trace": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"id": _text(1, 200), "url": HTTP_URL},
        },
        "expires_in": {"type": "integer", "minimum": 60, "maximum": 604800},
        "labels": {
            "type": "object",
            "maxProperties": 20,
            "propertyNames": {"minLength": 1, "maxLength": 64, "pattern": patterns.NO_NUL},
            "additionalProperties": _text(0, 200),
        },
    },
}

CANCEL_REQUEST: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["reason"],
    "properties": {"reason": _text(1, 2000)},
}

EXECUTION_REPORT: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["outcome", "action_digest"],
    "properties": {
        "outcome": {"enum": ["succeeded", "failed"]},
        "action_digest": {"type": "string", "pattern": patterns.DIGEST},
        "result": {**ANY_JSON, "description": "what the action returned"},
        "credential": {
            "type": "object",
            "additionalProperties": False,
            "required": ["type", "id"],
            "properties": {"type": _text(1, 100), "id": _text(1, 200)},
            "description": "the credential the agent acted with (never the secret itself)",
        },
    },
}
