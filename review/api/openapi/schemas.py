"""The schemas of the API: request bodies (the ones requests are validated against,
by review/api/schema.py: there is no second copy), the resources and the error body.

They are JSON Schema 2020-12, as OpenAPI 3.1 uses it; review/api/openapi/ puts them in
the document `GET /api/v1/openapi.json` serves.
"""

from __future__ import annotations

from typing import Any


def _text(low: int, high: int) -> dict[str, Any]:
    return {"type": "string", "minLength": low, "maxLength": high}


HTTP_URL = {
    "type": "string",
    "maxLength": 2000,
    "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[^\\s/?#]+[^\\s]*$",
    "description": "an absolute http:// or https:// URL",
}

DEFERRAL_REQUEST: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["action", "summary", "on_behalf_of"],
    "properties": {
        "action": {
            "type": "object",
            "additionalProperties": False,
            "required": ["tool", "args"],
            "properties": {"tool": _text(1, 200), "args": {"type": "object"}},
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
        "before": {"description": "state of the target before the action (any JSON)"},
        "after": {"description": "state of the target after the action (any JSON)"},
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
            "propertyNames": {"minLength": 1, "maxLength": 64},
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
        "action_digest": {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"},
        "result": {"description": "any JSON: what the action returned"},
        "credential": {
            "type": "object",
            "additionalProperties": False,
            "required": ["type", "id"],
            "properties": {"type": _text(1, 100), "id": _text(1, 200)},
            "description": "the credential the agent acted with (never the secret itself)",
        },
    },
}

EXECUTION = {
    "type": ["object", "null"],
    "required": ["outcome", "result", "reported_at"],
    "properties": {
        "outcome": {"enum": ["succeeded", "failed"]},
        "result": {},
        "reported_at": {"type": "string", "format": "date-time"},
        "credential": {
            "type": ["object", "null"],
            "description": "the credential the agent acted with: {type, id}",
        },
    },
}

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "path": {"type": "string", "description": "JSON Pointer"},
                            "message": {"type": "string"},
                        },
                    },
                },
            },
        }
    },
}

TIME = {"type": "string", "format": "date-time"}
NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}

DEFERRAL: dict[str, Any] = {
    "type": "object",
    "required": ["id", "agent", "status", "action", "action_digest", "summary", "risk"],
    "properties": {
        "id": {"type": "string", "pattern": "^dfr_[0-9A-Z]{26}$"},
        "agent": {"type": "string"},
        "status": {
            "enum": [
                "pending",
                "in_review",
                "approved",
                "rejected",
                "expired",
                "cancelled",
                "killed",
            ]
        },
        "action": {"type": "object"},
        "action_digest": {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"},
        "summary": {"type": "string"},
        "on_behalf_of": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "display_name": {"type": "string"},
                "verified": {
                    "type": "boolean",
                    "description": "a trusted issuer's token proved it",
                },
                "issuer": {"type": ["string", "null"]},
                "groups": {"type": "array", "items": {"type": "string"}},
            },
        },
        "rationale": {"type": ["string", "null"]},
        "resource": {"type": ["object", "null"]},
        "risk": {
            "type": "object",
            "properties": {
                "score": {"type": "integer"},
                "level": {"enum": ["low", "medium", "high", "critical"]},
                "agent_score": {"type": ["integer", "null"]},
                "factors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "rule": {"type": "string"},
                            "points": {"type": "integer"},
                            "detail": {"type": "string"},
                        },
                    },
                },
                "policy_version": {"type": "string"},
                "outcome": {
                    "enum": ["allow", "ask", "deny"],
                    "description": "what the policy decided: allow (approved at intake), "
                    "deny (rejected at intake) or ask (a person decides)",
                },
                "rule": {
                    "type": ["string", "null"],
                    "description": "the policy rule that set the outcome; null when none did",
                },
            },
        },
        "diff": {"type": "object"},
        "priority": {"type": "integer", "minimum": 0, "maximum": 100},
        "trace": {"type": ["object", "null"]},
        "labels": {"type": "object"},
        "created_at": TIME,
        "expires_at": TIME,
        "decision": {
            "type": ["object", "null"],
            "properties": {
                "outcome": {"type": "string"},
                "reason": {"type": ["string", "null"]},
                "decided_by": {"type": "array", "items": {"type": "string"}},
                "decided_at": TIME,
                "valid_until": NULLABLE_TIME,
                "receipt": {
                    "type": ["string", "null"],
                    "description": "approvals only: a compact JWS (EdDSA) of the approval, "
                    "verifiable offline with the keys at /.well-known/jwks.json",
                },
                "edited": {
                    "type": "boolean",
                    "description": "a reviewer approved edited args: `action` and "
                    "`action_digest` are the approved ones (PROTOCOL.md section 10)",
                },
                "original_action_digest": {
                    "type": ["string", "null"],
                    "description": "when edited: the digest of the action the agent asked for",
                },
                "action_patch": {
                    "type": ["array", "null"],
                    "items": {"type": "object"},
                    "description": "when edited: the RFC 6902 patch from the agent's action "
                    "to the approved one",
                },
            },
        },
        "execution": EXECUTION,
    },
}

AGENT_STATUS = {
    "type": "object",
    "required": ["agent", "state", "changed_at", "changed_by", "reason"],
    "properties": {
        "agent": {"type": "string"},
        "state": {"enum": ["active", "killed"]},
        "changed_at": TIME,
        "changed_by": {"type": "string"},
        "reason": {"type": "string"},
    },
}
