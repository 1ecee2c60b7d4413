"""The schemas of the API by their component names: the request bodies
(request_bodies.py), the resources and the error body (resources.py).

They are JSON Schema 2020-12, as OpenAPI 3.1 uses it; review/api/openapi/ puts them in
the document `GET /api/v1/openapi.json` serves.
"""

from __future__ import annotations

from review.api.openapi.request_bodies import (
    CANCEL_REQUEST,
    DEFERRAL_REQUEST,
    EXECUTION_REPORT,
    JSON_VALUE,
)
from review.api.openapi.resources import AGENT_STATUS, DEFERRAL, ERROR

SCHEMAS = {
    "DeferralRequest": DEFERRAL_REQUEST,
    "CancelRequest": CANCEL_REQUEST,
    "ExecutionReport": EXECUTION_REPORT,
    "JsonValue": JSON_VALUE,
    "Deferral": DEFERRAL,
    "AgentStatus": AGENT_STATUS,
    "Error": ERROR,
}
