"""Execution reports (PROTOCOL.md 4.4): the last link of a deferral's chain.

An agent reports what happened once it ran an approved action. The report is recorded
only when the deferral is approved, the digest is the approved one, the approval is
still valid and the agent is not stopped; anything else is refused, and the refused
report is still written to the audit log as a violation (the agent may have run
something it was not allowed to), shown on the deferral's and the agent's pages.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from review.agents.registry import Signer
from review.audit.chain import chained_write, record_event
from review.errors import AgentKilled, DomainError, InvalidState, NotFound
from review.models import Agent, Deferral, Execution, utcnow
from review.resources import deferral_resource
from review.services import Services

VIOLATION = "execution.violation"


@dataclass(frozen=True)
class Refused:
    error: type[DomainError]  # what the agent is answered
    rule: str  # which check it failed, kept in the audit event
    message: str


def _check(
    deferral: Deferral, agent: Agent, already: bool, digest: str, now: datetime
) -> Refused | None:
    if already:
        return Refused(InvalidState, "second_report", "execution was already reported")
    if deferral.status != "approved":
        return Refused(InvalidState, "not_approved", f"deferral is {deferral.status}, not approved")
    if digest != deferral.action_digest:
        return Refused(
            InvalidState,
            "digest_mismatch",
            "action_digest is not the digest of the approved action",
        )
    if deferral.valid_until is None or deferral.valid_until < now:
        return Refused(InvalidState, "approval_expired", "the approval is no longer valid")
    if agent.state == "killed":
        return Refused(
            AgentKilled, "agent_killed", "the agent's kill switch is on: nothing may run"
        )
    return None


def report_execution(
    svc: Services,
    deferral_id: str,
    agent: Signer,
    report: dict[str, Any],
    webhook_id: str,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Record the report and answer the deferral resource; or record why it was refused
    (as a violation, committed) and raise the refusal.
    """
    refused = _record(svc, deferral_id, agent, report, webhook_id, now or utcnow())
    if refused is not None:
        raise refused.error(refused.message)
    with svc.db.read() as session:
        return deferral_resource(session.get(Deferral, deferral_id))


def _record(
    svc: Services,
    deferral_id: str,
    agent: Signer,
    report: dict[str, Any],
    webhook_id: str,
    now: datetime,
) -> Refused | None:
    """The report or its violation, in one transaction; the refusal when there is one."""
    with chained_write(svc.db) as session:
        # The chain lock, held from the first statement, queues racing reports: the second
        # sees the first (and the primary key would refuse it anyway).
        deferral = session.get(Deferral, deferral_id)
        if deferral is None or deferral.agent_id != agent.id:
            raise NotFound("no such deferral")
        agent_row = session.get(Agent, agent.id)
        already = session.get(Execution, deferral_id) is not None
        refused = _check(deferral, agent_row, already, report["action_digest"], now)
        evidence = {
            "outcome": report["outcome"],
            "action_digest": report["action_digest"],
            "result": svc.redactor.apply("result", report.get("result")),
            "webhook_id": webhook_id,
        }
        if refused is not None:
            record_event(
                session,
                actor_kind="agent",
                actor_id=agent.slug,
                event_type=VIOLATION,
                agent=agent.slug,
                deferral_id=deferral_id,
                payload={
                    "rule": refused.rule,
                    "message": refused.message,
                    "status": deferral.status,
                    "approved_digest": deferral.action_digest,
                    **evidence,
                },
                at=now,
            )
            return refused
        session.add(
            Execution(
                deferral_id=deferral_id,
                outcome=report["outcome"],
                action_digest=report["action_digest"],
                result=report.get("result"),
                reported_at=now,
                webhook_id=webhook_id,
            )
        )
        record_event(
            session,
            actor_kind="agent",
            actor_id=agent.slug,
            event_type="execution.reported",
            agent=agent.slug,
            deferral_id=deferral_id,
            payload=evidence,
            at=now,
        )
    return None
