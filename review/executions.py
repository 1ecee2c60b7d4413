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

from review.agents import Signer
from review.audit import chained_write, record_event
from review.models import Agent, Deferral, Execution, utcnow
from review.runtime import Runtime

VIOLATION = "execution.violation"


@dataclass(frozen=True)
class Refused:
    status: int  # the HTTP status PROTOCOL.md gives it
    code: str
    rule: str  # which check it failed, kept in the audit event
    message: str


@dataclass(frozen=True)
class Reported:
    deferral: Deferral | None  # set when recorded
    refused: Refused | None


def _check(
    deferral: Deferral, agent: Agent, already: bool, digest: str, now: datetime
) -> Refused | None:
    if already:
        return Refused(409, "invalid_state", "second_report", "execution was already reported")
    if deferral.status != "approved":
        return Refused(
            409, "invalid_state", "not_approved", f"deferral is {deferral.status}, not approved"
        )
    if digest != deferral.action_digest:
        return Refused(
            409,
            "invalid_state",
            "digest_mismatch",
            "action_digest is not the digest of the approved action",
        )
    if deferral.valid_until is None or deferral.valid_until < now:
        return Refused(409, "invalid_state", "approval_expired", "the approval is no longer valid")
    if agent.state == "killed":
        return Refused(
            423, "agent_killed", "agent_killed", "the agent's kill switch is on: nothing may run"
        )
    return None


def report_execution(
    rt: Runtime,
    deferral_id: str,
    agent: Signer,
    report: dict[str, Any],
    webhook_id: str,
    now: datetime | None = None,
) -> Reported:
    """Record the report, or record why it was refused; both in one transaction."""
    now = now or utcnow()
    with chained_write(rt.db) as session:
        # The chain lock, held from the first statement, queues racing reports: the second
        # sees the first (and the primary key would refuse it anyway).
        deferral = session.get(Deferral, deferral_id)
        if deferral is None or deferral.agent_id != agent.id:
            return Reported(None, Refused(404, "not_found", "not_found", "no such deferral"))
        agent_row = session.get(Agent, agent.id)
        already = session.get(Execution, deferral_id) is not None
        refused = _check(deferral, agent_row, already, report["action_digest"], now)
        evidence = {
            "outcome": report["outcome"],
            "action_digest": report["action_digest"],
            "result": rt.redactor.apply("result", report.get("result")),
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
            return Reported(None, refused)
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
        session.flush()
        session.refresh(deferral)
        return Reported(deferral, None)
