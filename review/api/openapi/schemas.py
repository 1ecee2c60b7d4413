"""The schemas of the API: request bodies (the ones requests are validated against,
by review/api/schema.py: there is no second copy), the resources and the error body.

They are JSON Schema 2020-12, as OpenAPI 3.1 uses it; review/api/openapi/ puts them in
the document `GET /api/v1/openapi.json` serves.
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

# The resources and the error body. Convention (tests/test_openapi.py holds every resource
# the service writes to it): an object schema without `additionalProperties` lists every
# field the service sends; an open one (arguments, labels) says so.
OPEN = {"type": "object", "additionalProperties": True}

EXECUTION = {
    "type": ["object", "null"],
    "required": ["outcome", "result", "reported_at"],
    "properties": {
        "outcome": {"enum": ["succeeded", "failed"]},
        "result": {"description": "what the action returned, as reported"},
        "reported_at": {"type": "string", "format": "date-time"},
        "credential": {
            "type": "object",
            "required": ["type", "id"],
            "properties": {"type": {"type": "string"}, "id": {"type": "string"}},
            "description": "the credential the agent acted with, when the report named one",
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
                "code": {"type": "string", "description": "PROTOCOL.md section 3"},
                "message": {"type": "string"},
                "details": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["path", "message"],
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

ROUTE: dict[str, Any] = {
    "type": "object",
    "description": "who may claim it and how many distinct approvers it needs "
    "(PROTOCOL.md section 10)",
    "required": ["group", "required_approvals", "approvals"],
    "properties": {
        "group": {
            "type": ["string", "null"],
            "description": "the reviewer group a policy rule routed it to: only its members "
            "(and admins) may claim it; null: any reviewer",
        },
        "required_approvals": {
            "type": "integer",
            "minimum": 1,
            "description": "distinct approvers needed: the highest quorum of the rules that "
            "matched, and 2 from COUNTERSIGN_TWO_PERSON_LEVEL",
        },
        "approvals": {
            "type": "array",
            "items": {"type": "string"},
            "description": "the usernames of the approvals given so far, in order",
        },
        "handed_to": {
            "type": ["string", "null"],
            "description": "a reviewer handed it over: only they (and admins) may claim it "
            "until they decide it or hand it on",
        },
        "not_before": {
            **NULLABLE_TIME,
            "description": "a reviewer snoozed it: no batch offers it before this time",
        },
    },
}

DEFERRAL: dict[str, Any] = {
    "type": "object",
    "required": [
        "id",
        "agent",
        "status",
        "action",
        "action_digest",
        "summary",
        "on_behalf_of",
        "rationale",
        "resource",
        "risk",
        "route",
        "diff",
        "priority",
        "trace",
        "labels",
        "created_at",
        "expires_at",
        "decision",
        "execution",
    ],
    "properties": {
        "id": {"type": "string", "pattern": patterns.DEFERRAL_ID},
        "agent": {"type": "string", "pattern": patterns.AGENT_SLUG},
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
        "action": {
            "type": "object",
            "required": ["tool", "args"],
            "properties": {"tool": {"type": "string"}, "args": OPEN},
        },
        "action_digest": {"type": "string", "pattern": patterns.DIGEST},
        "summary": {"type": "string"},
        "on_behalf_of": {
            "type": "object",
            "required": ["id"],
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
        "resource": {
            "type": ["object", "null"],
            "required": ["type", "id"],
            "properties": {"type": {"type": "string"}, "id": {"type": "string"}},
        },
        "risk": {
            "type": "object",
            "required": [
                "score",
                "level",
                "agent_score",
                "factors",
                "policy_version",
                "outcome",
                "rule",
            ],
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
        "route": ROUTE,
        "diff": {
            "type": "object",
            "description": "the server's diff of `before` and `after`, as stored",
            "properties": {
                "changes": {
                    "type": "array",
                    "items": {
                        **OPEN,
                        "properties": {
                            "op": {"type": "string"},
                            "path": {"type": "string", "description": "JSON Pointer"},
                            "old": {},
                            "new": {},
                        },
                    },
                },
                "count": {"type": "integer"},
                "truncated": {"type": "boolean"},
                "note": {"type": ["string", "null"]},
            },
        },
        "priority": {"type": "integer", "minimum": 0, "maximum": 100},
        "trace": {
            "type": ["object", "null"],
            "properties": {"id": {"type": "string"}, "url": {"type": "string"}},
        },
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "created_at": TIME,
        "expires_at": TIME,
        "decision": {
            "type": ["object", "null"],
            "required": ["outcome", "reason", "decided_by", "decided_at", "valid_until"],
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
        "agent": {"type": "string", "pattern": patterns.AGENT_SLUG},
        "state": {"enum": ["active", "killed"]},
        "changed_at": TIME,
        "changed_by": {"type": "string"},
        "reason": {"type": "string"},
    },
}

SCHEMAS = {
    "DeferralRequest": DEFERRAL_REQUEST,
    "CancelRequest": CANCEL_REQUEST,
    "ExecutionReport": EXECUTION_REPORT,
    "JsonValue": JSON_VALUE,
    "Deferral": DEFERRAL,
    "AgentStatus": AGENT_STATUS,
    "Error": ERROR,
}
