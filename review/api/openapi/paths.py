"""The operations of the agent API (PROTOCOL.md section 4), for the OpenAPI document."""

from __future__ import annotations

from typing import Any

SIGNED = [{"standardWebhooks": []}]


def _responses(ok: dict[str, Any], *codes: int) -> dict[str, Any]:
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    out = dict(ok)
    for code in codes:
        out[str(code)] = {"description": "error", **error}
    return out


def _json(ref: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }


def paths() -> dict[str, Any]:
    deferral_id = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
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
        "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$"},
    }
    return {
        "/api/v1/agents/{agent}/deferrals": {
            "post": {
                "summary": "Defer an action for human review",
                "parameters": [agent],
                "security": SIGNED,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/DeferralRequest"}
                        }
                    },
                },
                "responses": _responses(
                    {
                        "202": _json("Deferral", "created"),
                        "200": _json("Deferral", "a retry of an earlier request"),
                    },
                    400,
                    401,
                    409,
                    413,
                    415,
                    422,
                    423,
                    429,
                ),
            }
        },
        "/api/v1/deferrals/{id}": {
            "get": {
                "summary": "Read one of this agent's deferrals",
                "parameters": [deferral_id, wait],
                "security": SIGNED,
                "responses": _responses(
                    {"200": _json("Deferral", "the deferral")}, 401, 404, 422, 429
                ),
            }
        },
        "/api/v1/deferrals/{id}/execution": {
            "post": {
                "summary": "Report what happened when the approved action ran (once)",
                "parameters": [deferral_id],
                "security": SIGNED,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/ExecutionReport"}
                        }
                    },
                },
                "responses": _responses(
                    {
                        "201": _json("Deferral", "recorded"),
                        "200": _json("Deferral", "a retry of the recorded report"),
                    },
                    400,
                    401,
                    404,
                    409,
                    413,
                    415,
                    422,
                    423,
                ),
            }
        },
        "/api/v1/deferrals/{id}/cancel": {
            "post": {
                "summary": "Withdraw a deferral that is still undecided",
                "parameters": [deferral_id],
                "security": SIGNED,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/CancelRequest"}
                        }
                    },
                },
                "responses": _responses(
                    {"200": _json("Deferral", "cancelled")},
                    400,
                    401,
                    404,
                    409,
                    413,
                    415,
                    422,
                ),
            }
        },
        "/api/v1/agents/{agent}/status": {
            "get": {
                "summary": "The agent's kill switch",
                "parameters": [agent],
                "security": SIGNED,
                "responses": _responses({"200": _json("AgentStatus", "state")}, 401),
            }
        },
    }
