"""Intake: turn a validated deferral request into a scored, diffed, audited deferral.

Scoring and diffing happen before the transaction (they can take a few hundred ms on
a large diff and need no lock). The transaction then locks the agent's row, which
serialises intake per agent (so the pending cap and idempotency hold exactly, and a
kill switch flipped meanwhile is seen), inserts the deferral and writes `received` and
`evaluated` into the audit chain.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from review import priority
from review.api.errors import ApiError
from review.audit import canonical_json, record_event
from review.diffing import ABSENT, compute_diff
from review.ids import new_deferral_id
from review.models import PENDING_STATUSES, Agent, Deferral, utcnow
from review.policy import Evaluation, Facts
from review.runtime import Runtime

PENDING_CAP_RETRY_AFTER = 30


def action_digest(action: dict[str, Any]) -> str:
    """SHA-256 of the RFC 8785 canonical JSON of the action (PROTOCOL.md section 5)."""
    return "sha256:" + hashlib.sha256(canonical_json(action)).hexdigest()


def request_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(body)).hexdigest()


@dataclass(frozen=True)
class Prepared:
    """Everything computed from the request before touching the database."""

    body: dict[str, Any]
    request_hash: str
    digest: str
    diff: dict[str, Any]
    evaluation: Evaluation


def prepare(rt: Runtime, body: dict[str, Any]) -> Prepared:
    s = rt.settings
    diff = compute_diff(
        body.get("before", ABSENT),
        body.get("after", ABSENT),
        max_changes=s.diff_max_changes,
        max_ms=s.diff_max_ms,
    )
    action = body["action"]
    facts = Facts(
        tool=action["tool"],
        args=action["args"],
        principal_id=body["on_behalf_of"]["id"],
        labels=body.get("labels", {}),
        changed_paths=[c["path"] for c in diff["changes"]],
        change_count=diff["count"],
        agent_score=body.get("risk", {}).get("score"),
    )
    return Prepared(
        body, request_hash(body), action_digest(action), diff, rt.policy.evaluate(facts)
    )


@dataclass(frozen=True)
class Received:
    deferral: Deferral
    created: bool  # False: a retry of an earlier identical request


def create_deferral(
    rt: Runtime, agent_id: int, webhook_id: str, prepared: Prepared, now: datetime | None = None
) -> Received:
    try:
        with rt.db.write() as session:
            return _create(rt, session, agent_id, webhook_id, prepared, now or utcnow())
    except IntegrityError:
        # Two requests with one webhook-id raced past the lookup; the other one won.
        with rt.db.read() as session:
            existing = _existing(session, agent_id, webhook_id)
            if existing is None:
                raise
            return _replay(existing, prepared)


def _existing(session: Session, agent_id: int, webhook_id: str) -> Deferral | None:
    return session.scalar(
        select(Deferral).where(Deferral.agent_id == agent_id, Deferral.webhook_id == webhook_id)
    )


def _replay(existing: Deferral, prepared: Prepared) -> Received:
    if existing.request_hash != prepared.request_hash:
        raise ApiError(
            409,
            "idempotency_conflict",
            "this webhook-id was already used with a different body",
        )
    return Received(existing, created=False)


def _create(
    rt: Runtime,
    session: Session,
    agent_id: int,
    webhook_id: str,
    prepared: Prepared,
    now: datetime,
) -> Received:
    s = rt.settings
    agent = session.execute(
        select(Agent).where(Agent.id == agent_id).with_for_update()
    ).scalar_one()
    existing = _existing(session, agent_id, webhook_id)
    if existing is not None:
        return _replay(existing, prepared)
    if agent.state == "killed":
        raise ApiError(423, "agent_killed", f"agent {agent.slug} is stopped: {agent.state_reason}")
    if s.agent_max_pending:
        undecided = session.scalar(
            select(func.count())
            .select_from(Deferral)
            .where(Deferral.agent_id == agent_id, Deferral.status.in_(PENDING_STATUSES))
        )
        if undecided >= s.agent_max_pending:
            raise ApiError(
                429,
                "rate_limited",
                f"agent has {undecided} undecided deferrals (cap {s.agent_max_pending})",
                headers={"Retry-After": str(PENDING_CAP_RETRY_AFTER)},
            )

    body, ev = prepared.body, prepared.evaluation
    expires_in = body.get("expires_in", s.default_expires_in)
    expires_at = now + timedelta(seconds=expires_in)
    rank = priority.rank(
        ev.score,
        now,
        expires_at,
        default_expires_in=s.default_expires_in,
        age_seconds_per_point=s.priority_age_seconds_per_point,
        expiry_seconds_per_point=s.priority_expiry_seconds_per_point,
    )
    intake_priority = priority.clamp_priority(
        priority.priority_at(
            now,
            rank,
            age_seconds_per_point=s.priority_age_seconds_per_point,
            expiry_seconds_per_point=s.priority_expiry_seconds_per_point,
        )
    )
    state = {k: body[k] for k in ("before", "after") if k in body}
    deferral = Deferral(
        id=new_deferral_id(),
        agent_id=agent_id,
        webhook_id=webhook_id,
        request_hash=prepared.request_hash,
        status="pending",
        tool=body["action"]["tool"],
        action=body["action"],
        action_digest=prepared.digest,
        summary=body["summary"],
        principal_id=body["on_behalf_of"]["id"],
        principal_name=body["on_behalf_of"].get("display_name"),
        rationale=body.get("rationale"),
        state=state,
        diff=prepared.diff,
        resource_type=body.get("resource", {}).get("type"),
        resource_id=body.get("resource", {}).get("id"),
        labels=body.get("labels", {}),
        trace_id=body.get("trace", {}).get("id"),
        trace_url=body.get("trace", {}).get("url"),
        risk_score=ev.score,
        risk_level=ev.level,
        risk_factors=ev.factors,
        agent_risk=body.get("risk"),
        policy_version=ev.policy_version,
        priority=intake_priority,
        rank=rank,
        created_at=now,
        expires_at=expires_at,
        decided_by=[],
    )
    session.add(deferral)
    session.flush()
    deferral.agent = agent
    audit = {
        "actor_kind": "agent",
        "actor_id": agent.slug,
        "agent": agent.slug,
        "deferral_id": deferral.id,
        "at": now,
    }
    record_event(
        session,
        event_type="deferral.received",
        payload={
            "webhook_id": webhook_id,
            "on_behalf_of": body["on_behalf_of"],
            "summary": body["summary"],
            "rationale": body.get("rationale"),
            "action": body["action"],
            "action_digest": prepared.digest,
            "resource": body.get("resource"),
            "trace": body.get("trace"),
            "labels": body.get("labels", {}),
            "state": state,
            "expires_at": expires_at.isoformat(),
        },
        **audit,
    )
    record_event(
        session,
        event_type="deferral.evaluated",
        payload={
            **ev.as_risk(),
            "priority": intake_priority,
            "diff": {"count": prepared.diff["count"], "truncated": prepared.diff["truncated"]},
        },
        **audit,
    )
    return Received(deferral, created=True)


def record_refusal(
    rt: Runtime, agent: Agent, error: ApiError, *, webhook_id: str | None, endpoint: str
) -> None:
    """Audit a refused (but authenticated) request in its own transaction."""
    with rt.db.write() as session:
        record_event(
            session,
            actor_kind="agent",
            actor_id=agent.slug,
            agent=agent.slug,
            event_type="request.refused",
            payload={
                "endpoint": endpoint,
                "status": error.status,
                "code": error.code,
                "message": error.message,
                "details": error.details or [],
                "webhook_id": webhook_id,
            },
        )
