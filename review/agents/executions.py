"""Execution reports (PROTOCOL.md 4.4): the last link of a deferral's chain.

An agent reports what happened once it ran an approved action. The report is recorded
only when the deferral is approved, the digest is the approved one, the approval is
still valid and the agent is not stopped; anything else is refused, and the refused
report is still written to the audit log as a violation (the agent may have run
something it was not allowed to), shown on the deferral's and the agent's pages.

A retry of the recorded report (same webhook-id, same body) answers it again and records
nothing. The first MAX_FULL_VIOLATIONS violations of a deferral are written in full;
later ones are counted, one `execution.violation_repeated` event per rule and minute
(review/audit/repeats.py), so an agent hammering the endpoint cannot grow the log.

The approval must be valid when the run begins. For the API that is the report's own
moment (PROTOCOL.md 4.4). A door that records when the run began (AAP's `consume`, a
single-use claim under the approval's validity) passes it as `started_at`, and a report
after `valid_until` of a run that began before it is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from review.agents.registry import Signer
from review.audit import repeats
from review.audit.chain import chained_write, record_event
from review.audit.hashing import payload_json
from review.errors import AgentKilled, DomainError, InvalidState, NotFound
from review.models import Agent, AuditEvent, Deferral, Execution, utcnow
from review.resources import deferral_resource
from review.services import Services

VIOLATION = "execution.violation"
VIOLATION_REPEATED = "execution.violation_repeated"
REPORTED = "execution.reported"
MAX_FULL_VIOLATIONS = 10  # per deferral; beyond, counted per rule and minute


@dataclass(frozen=True)
class Refused:
    error: type[DomainError]  # what the agent is answered
    rule: str  # which check it failed, kept in the audit event
    message: str


@dataclass(frozen=True)
class Reported:
    resource: dict[str, Any]  # the deferral, its execution included
    created: bool  # False: a retry of the report recorded before


@dataclass(frozen=True)
class _Outcome:
    refused: Refused | None = None
    retry: bool = False  # the recorded report again (same webhook-id and body)
    counted: bool = False  # a refusal beyond MAX_FULL_VIOLATIONS: counted, not written


def _check(
    deferral: Deferral, agent: Agent, already: bool, digest: str, began: datetime
) -> Refused | None:
    if already:
        return Refused(InvalidState, "second_report", "execution was already reported")
    if deferral.status != "approved":
        return Refused(InvalidState, "not_approved", f"deferral is {deferral.status}, not approved")
    if digest != deferral.action_digest and digest == deferral.original_action_digest:
        return Refused(
            InvalidState,
            "digest_of_original",
            "a reviewer edited this action before approving it: action_digest must be "
            f"{deferral.action_digest} (the approved action), not {digest} (the one you asked "
            "for); run the approved action from the deferral and report its digest",
        )
    if digest != deferral.action_digest:
        return Refused(
            InvalidState,
            "digest_mismatch",
            "action_digest is not the digest of the approved action",
        )
    if deferral.valid_until is None or deferral.valid_until < began:
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
    started_at: datetime | None = None,
) -> Reported:
    """Record the report and answer the deferral resource (a retry answers it again); or
    record why it was refused (as a violation, committed, or counted) and raise the refusal.
    `started_at`: when the run began, if the service recorded it (see the module's doc).
    """
    outcome = _record(svc, deferral_id, agent, report, webhook_id, now or utcnow(), started_at)
    if outcome.refused is not None:
        if outcome.counted:
            kind = repeats.Kind(
                VIOLATION_REPEATED, agent.slug, deferral_id, {"rule": outcome.refused.rule}
            )
            repeats.count(svc, kind)
        raise outcome.refused.error(outcome.refused.message)
    with svc.db.read() as session:
        resource = deferral_resource(session.get(Deferral, deferral_id))
    return Reported(resource, created=not outcome.retry)


def _record(
    svc: Services,
    deferral_id: str,
    agent: Signer,
    report: dict[str, Any],
    webhook_id: str,
    now: datetime,
    started_at: datetime | None = None,
) -> _Outcome:
    """The report or its violation, in one transaction; the refusal when there is one."""
    with chained_write(svc.db) as session:
        # The chain lock, held from the first statement, queues racing reports: the second
        # sees the first (and the primary key would refuse it anyway).
        deferral = session.get(Deferral, deferral_id)
        if deferral is None or deferral.agent_id != agent.id:
            raise NotFound("no such deferral")
        agent_row = session.get(Agent, agent.id)
        recorded = session.get(Execution, deferral_id)
        evidence = {
            "outcome": report["outcome"],
            "action_digest": report["action_digest"],
            "result": svc.redactor.apply("result", report.get("result")),
            "webhook_id": webhook_id,
        }
        if report.get("credential") is not None:  # which credential acted (PROTOCOL.md 17)
            evidence["credential"] = report["credential"]
        if (
            recorded is not None
            and recorded.webhook_id == webhook_id
            and _recorded_evidence(session, deferral_id) == payload_json(evidence)
        ):
            return _Outcome(retry=True)
        began = started_at or now
        refused = _check(deferral, agent_row, recorded is not None, report["action_digest"], began)
        if refused is not None:
            if _violations(session, deferral_id) >= MAX_FULL_VIOLATIONS:
                return _Outcome(refused, counted=True)
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
            return _Outcome(refused)
        session.add(
            Execution(
                deferral_id=deferral_id,
                outcome=report["outcome"],
                action_digest=report["action_digest"],
                result=report.get("result"),
                credential=report.get("credential"),
                reported_at=now,
                webhook_id=webhook_id,
            )
        )
        record_event(
            session,
            actor_kind="agent",
            actor_id=agent.slug,
            event_type=REPORTED,
            agent=agent.slug,
            deferral_id=deferral_id,
            payload=evidence,
            at=now,
        )
    return _Outcome()


def _recorded_evidence(session: Session, deferral_id: str) -> str | None:
    """The recorded report as its audit event keeps it (payload text: canonical JSON)."""
    return session.scalar(
        select(AuditEvent.payload).where(
            AuditEvent.deferral_id == deferral_id, AuditEvent.event_type == REPORTED
        )
    )


def _violations(session: Session, deferral_id: str) -> int:
    return session.scalar(
        select(func.count())
        .select_from(AuditEvent)
        .where(AuditEvent.deferral_id == deferral_id, AuditEvent.event_type == VIOLATION)
    )
