"""Refused agent requests, audited in bounded form.

The API decides the status of each refusal (review/api/errors.py) and hands it here.
The first refusal of an agent with one code in a minute is written in full as
`request.refused` (what the agent was told, so the log shows what it kept trying); the
rest of that minute's are counted and written as one `request.refused_repeated` event
with the count (review/audit/repeats.py), so a flood of refusals cannot grow the log.
"""

from __future__ import annotations

from dataclasses import dataclass

from review.agents.registry import Signer
from review.audit import repeats
from review.audit.chain import record_event
from review.services import Services

REFUSED = "request.refused"
REFUSED_REPEATED = "request.refused_repeated"


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
    """Audit a refused (but authenticated) request: in full in its own transaction when it
    is the first of its code this minute, otherwise as a count."""
    kind = repeats.Kind(
        REFUSED_REPEATED, agent.slug, None, {"code": refusal.code, "status": refusal.status}
    )
    if not repeats.first_this_minute(svc, kind):
        return
    repeats.flush_quietly(svc)  # the minutes before this one, so the log stays in order
    with svc.db.write() as session:
        record_event(
            session,
            actor_kind="agent",
            actor_id=agent.slug,
            agent=agent.slug,
            event_type=REFUSED,
            payload={
                "endpoint": endpoint,
                "status": refusal.status,
                "code": refusal.code,
                "message": refusal.message,
                "details": refusal.details,
                "webhook_id": webhook_id,
            },
        )
