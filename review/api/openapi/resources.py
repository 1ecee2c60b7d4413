"""The schemas of what the service answers: the deferral resource, the agent's status
and the error body (JSON Schema 2020-12, as OpenAPI 3.1 uses it)."""

from __future__ import annotations

from typing import Any

from review.api.openapi import patterns

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
