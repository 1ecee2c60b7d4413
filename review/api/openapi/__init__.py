"""The API described as OpenAPI 3.1: the document `GET /api/v1/openapi.json` serves.

Its request schemas (schemas.py) are the ones requests are validated against
(review/api/schema.py): there is no second copy. The operations are in paths.py.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from review.api.openapi.paths import paths
from review.api.openapi.schemas import (
    AGENT_STATUS,
    CANCEL_REQUEST,
    DEFERRAL,
    DEFERRAL_REQUEST,
    ERROR,
    EXECUTION_REPORT,
)

__all__ = ["DEFERRAL_REQUEST", "openapi_document"]


@cache
def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Countersign agent API",
            "version": "1",
            "description": "Agents defer high-risk actions for human review. Every request is "
            "signed with the agent's secret (Standard Webhooks); see PROTOCOL.md.",
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "paths": paths(),
        "components": {
            "schemas": {
                "DeferralRequest": DEFERRAL_REQUEST,
                "CancelRequest": CANCEL_REQUEST,
                "ExecutionReport": EXECUTION_REPORT,
                "Deferral": DEFERRAL,
                "AgentStatus": AGENT_STATUS,
                "Error": ERROR,
            },
            "securitySchemes": {
                "standardWebhooks": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "webhook-signature",
                    "description": "v1,<base64 HMAC-SHA256 of '{webhook-id}.{webhook-timestamp}."
                    "{body}'> with the agent's whsec_ secret; webhook-id and webhook-timestamp "
                    "headers are required too.",
                }
            },
        },
    }
