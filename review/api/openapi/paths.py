"""The operations of the agent API (PROTOCOL.md section 4), for the OpenAPI document.

Every operation has an operationId and a tag; every signed one its three Standard
Webhooks headers (components.py); every error status it can answer lists the codes
review/api/errors.py gives that status, and a 429 or 503 its Retry-After.
"""

from __future__ import annotations

from typing import Any

from review.api.errors import codes_for
from review.api.openapi import patterns

SIGNED = [{"standardWebhooks": []}]
SIGNATURE_HEADERS = [
    {"$ref": "#/components/parameters/WebhookId"},
    {"$ref": "#/components/parameters/WebhookTimestamp"},
    {"$ref": "#/components/parameters/WebhookSignature"},
]

# Answered before or regardless of the operation: a bad signature, a body over the limit.
SIGNED_ERRORS = (401, 413)
# Answered by every operation that reads a JSON body.
BODY_ERRORS = (400, 415, 422)

WHY = {
    400: "the body is not JSON the service reads",
    401: "not signed by a known agent now (which part failed is not said)",
    404: "no such deferral, or another agent's",
    409: "a conflict with the deferral's state or an earlier request",
    413: "the body is over the size limit",
    415: "not application/json in UTF-8",
    422: "the request breaks the schema or a rule; details give each JSON Pointer",
    423: "the agent's kill switch is on",
    429: "over the agent's request rate, pending cap or long-polls; retry after Retry-After",
    503: "the principal token's issuer has no keys to give now; retry after Retry-After",
}
RETRY_LATER = (429, 503)


def error_response(status: int) -> dict[str, Any]:
    """The error body with the codes this status carries (and Retry-After for 429)."""
    response: dict[str, Any] = {
        "description": WHY[status],
        "content": {
            "application/json": {
                "schema": {
                    "allOf": [{"$ref": "#/components/schemas/Error"}],
                    "properties": {"error": {"properties": {"code": {"enum": codes_for(status)}}}},
                }
            }
        },
    }
    if status in RETRY_LATER:
        response["headers"] = {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}
    return response


def _responses(ok: dict[str, Any], *statuses: int) -> dict[str, Any]:
    out = dict(ok)
    for status in sorted({*statuses, *SIGNED_ERRORS}):
        out[str(status)] = error_response(status)
    return out


def _json(ref: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }


def _body(ref: str) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }


def _signed(operation_id: str, tag: str, parameters: list, **operation: Any) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "tags": [tag],
        "parameters": [*parameters, *SIGNATURE_HEADERS],
        "security": SIGNED,
        **operation,
    }


def paths() -> dict[str, Any]:
    deferral_id = {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "maxLength": 40},
        "description": "a deferral id (`dfr_` and 26 characters); any other answers 404",
    }
    wait = {
        "name": "wait",
        "in": "query",
        "required": False,
        "description": "long-poll: answer once the deferral has ended or after this many "
        "seconds, whichever is first",
        "schema": {"type": "integer", "minimum": 0, "maximum": 60},
    }
    agent = {
        "name": "agent",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": patterns.AGENT_SLUG},
    }
    return {
        "/api/v1/agents/{agent}/deferrals": {
            "post": _signed(
                "createDeferral",
                "deferrals",
                [agent],
                summary="Defer an action for human review",
                description="The webhook-id is the idempotency key: the same id with the "
                "same body answers 200 with the deferral it created; with another body, 409.",
                requestBody=_body("DeferralRequest"),
                responses=_responses(
                    {
                        "202": _json("Deferral", "created"),
                        "200": _json("Deferral", "a retry of an earlier request"),
                    },
                    *BODY_ERRORS,
                    409,
                    423,
                    429,
                    503,
                ),
            )
        },
        "/api/v1/deferrals/{id}": {
            "get": _signed(
                "readDeferral",
                "deferrals",
                [deferral_id, wait],
                summary="Read one of this agent's deferrals",
                responses=_responses({"200": _json("Deferral", "the deferral")}, 404, 422, 429),
            )
        },
        "/api/v1/deferrals/{id}/execution": {
            "post": _signed(
                "reportExecution",
                "deferrals",
                [deferral_id],
                summary="Report what happened when the approved action ran (once)",
                requestBody=_body("ExecutionReport"),
                responses=_responses(
                    {
                        "201": _json("Deferral", "recorded"),
                        "200": _json("Deferral", "a retry of the recorded report"),
                    },
                    *BODY_ERRORS,
                    404,
                    409,
                    423,
                ),
            )
        },
        "/api/v1/deferrals/{id}/cancel": {
            "post": _signed(
                "cancelDeferral",
                "deferrals",
                [deferral_id],
                summary="Withdraw a deferral that is still undecided",
                requestBody=_body("CancelRequest"),
                responses=_responses(
                    {"200": _json("Deferral", "cancelled")}, *BODY_ERRORS, 404, 409
                ),
            )
        },
        "/api/v1/agents/{agent}/status": {
            "get": _signed(
                "readAgentStatus",
                "agents",
                [agent],
                summary="The agent's kill switch",
                responses=_responses({"200": _json("AgentStatus", "state")}),
            )
        },
        "/api/v1/openapi.json": {
            "get": {
                "operationId": "readOpenApiDocument",
                "tags": ["document"],
                "summary": "This document",
                "security": [],
                "responses": {
                    "200": {
                        "description": "the OpenAPI 3.1 document",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    }
