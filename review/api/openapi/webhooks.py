"""The callbacks the service sends to an agent's callback URL (PROTOCOL.md section 6), as
OpenAPI 3.1 `webhooks`: one per event type, with the body review/callbacks/outbox.py
writes and the Standard Webhooks headers queue/delivery.py signs it with."""

from __future__ import annotations

from typing import Any

from review.api.openapi.resources import TIME

EVENTS = {
    "deferral.decided": (
        "DeferralDecidedEvent",
        "Deferral",
        "A deferral reached a terminal status (approved, rejected, expired, cancelled, "
        "killed). Treat it as a wake-up: before executing, confirm with a signed GET that "
        "the deferral is approved and its action_digest is the one about to run.",
    ),
    "agent.killed": ("AgentKilledEvent", "AgentStatus", "The agent's kill switch was turned on."),
    "agent.revived": (
        "AgentRevivedEvent",
        "AgentStatus",
        "The agent's kill switch was turned off.",
    ),
}


def event_schemas() -> dict[str, Any]:
    """The callback bodies: `{"type", "timestamp", "data"}`."""
    return {
        name: {
            "type": "object",
            "required": ["type", "timestamp", "data"],
            "properties": {
                "type": {"const": event_type},
                "timestamp": TIME,
                "data": {"$ref": f"#/components/schemas/{data}"},
            },
        }
        for event_type, (name, data, _) in EVENTS.items()
    }


def _operation_id(event_type: str) -> str:
    first, second = event_type.split(".")
    return "on" + first.capitalize() + second.capitalize()


RECEIVER_ANSWERS = {
    "2XX": {"description": "delivered (within COUNTERSIGN_DELIVERY_DEADLINE, 15 s by default)"},
    "410": {"description": "Gone: the callback is dead-lettered at once, never retried"},
    "default": {
        "description": "anything else (a 3xx too: redirects are not followed) is retried on "
        "the schedule, then dead-lettered for the agent's owners to redeliver",
        "headers": {
            "Retry-After": {
                "description": "seconds or an HTTP date: the next attempt waits this long "
                "(at most a day)",
                "schema": {"type": "string"},
            }
        },
    },
}


def webhooks() -> dict[str, Any]:
    return {
        event_type: {
            "post": {
                "operationId": _operation_id(event_type),
                "tags": ["callbacks"],
                "summary": f"{event_type} to the agent's callback URL",
                "description": description + " Delivered at least once: deduplicate on "
                "webhook-id, the same across every retry of one event.",
                "parameters": [
                    {"$ref": "#/components/parameters/WebhookId"},
                    {"$ref": "#/components/parameters/WebhookTimestamp"},
                    {"$ref": "#/components/parameters/WebhookSignature"},
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}
                    },
                },
                "responses": RECEIVER_ANSWERS,
            }
        }
        for event_type, (name, _, description) in EVENTS.items()
    }
