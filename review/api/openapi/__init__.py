"""The API described as OpenAPI 3.1: the document `GET /api/v1/openapi.json` serves.

Its request schemas (request_bodies.py) are the ones requests are validated against
(review/api/schema.py): there is no second copy. The operations are in paths.py, the
callbacks in webhooks.py, the shared headers in components.py.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from review.api.openapi import components
from review.api.openapi.paths import paths
from review.api.openapi.request_bodies import DEFERRAL_REQUEST
from review.api.openapi.schemas import SCHEMAS
from review.api.openapi.webhooks import event_schemas, webhooks

__all__ = ["DEFERRAL_REQUEST", "openapi_document"]

TAGS = [
    {"name": "deferrals", "description": "defer an action, read it, withdraw it, report it ran"},
    {"name": "agents", "description": "the agent's kill switch"},
    {"name": "callbacks", "description": "what the service POSTs to the agent's callback URL"},
    {"name": "document", "description": "this description of the API"},
]


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
        "tags": TAGS,
        "paths": paths(),
        "webhooks": webhooks(),
        "components": {
            "schemas": {**SCHEMAS, **event_schemas()},
            "parameters": components.PARAMETERS,
            "headers": components.HEADERS,
            "securitySchemes": components.SECURITY_SCHEMES,
        },
    }
