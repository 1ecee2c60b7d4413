"""Refused agent requests, audited: every refusal of an authenticated request leaves an event.

The API decides the status of each refusal (review/api/errors.py) and hands it here;
the event keeps what the agent was told, so the log shows what an agent kept trying.
"""

from __future__ import annotations

from dataclasses import dataclass

from review.agents.registry import Signer
from review.audit.chain import record_event
from review.services import Services


@dataclass(frozen=True)
class Refusal:
    """What the agent was answered: status, PROTOCOL.md code, message, failing fields."""

    status: int
    code: str
    message: str
    details: list[dict[str, str]]


def record_refusal(
    svc: Services, agent: Signer, refusal: Refusal, *, webhook_id: str | None, endpoint: str
) -> None:
    """Audit a refused (but authenticated) request in its own transaction."""
    with svc.db.write() as session:
        record_event(
            session,
            actor_kind="agent",
            actor_id=agent.slug,
            agent=agent.slug,
            event_type="request.refused",
            payload={
                "endpoint": endpoint,
                "status": refusal.status,
                "code": refusal.code,
                "message": refusal.message,
                "details": refusal.details,
                "webhook_id": webhook_id,
            },
        )
