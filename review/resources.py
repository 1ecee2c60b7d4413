"""The deferral resource and the agent status object, exactly as PROTOCOL.md section 5 shows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from review.models import TERMINAL_STATUSES, Agent, Deferral


def rfc3339(at: datetime | None) -> str | None:
    if at is None:
        return None
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def deferral_resource(d: Deferral, agent_slug: str | None = None) -> dict[str, Any]:
    principal: dict[str, Any] = {"id": d.principal_id}
    if d.principal_name is not None:
        principal["display_name"] = d.principal_name
    proof = getattr(d, "principal_verified", None)  # PROTOCOL.md section 17
    principal["verified"] = bool(proof)
    principal["issuer"] = proof.get("issuer") if proof else None
    principal["groups"] = list(proof.get("groups") or []) if proof else []
    trace = None
    if d.trace_id is not None or d.trace_url is not None:
        trace = {k: v for k, v in (("id", d.trace_id), ("url", d.trace_url)) if v is not None}
    decision = None
    if d.status in TERMINAL_STATUSES:
        decision = {
            "outcome": d.status,
            "reason": d.decision_reason,
            "decided_by": list(d.decided_by or []),
            "decided_at": rfc3339(d.decided_at),
            "valid_until": rfc3339(d.valid_until),
            "receipt": d.receipt if d.status == "approved" else None,
            # Edit, then approve (PROTOCOL.md section 10): `action` is the approved one;
            # the patch turns the agent's action into it (RFC 6902).
            **edit_fields(d),
        }
    return {
        "id": d.id,
        "agent": agent_slug or d.agent.slug,
        "status": d.status,
        "action": d.action,
        "action_digest": d.action_digest,
        "summary": d.summary,
        "on_behalf_of": principal,
        "rationale": d.rationale,
        "resource": (
            {"type": d.resource_type, "id": d.resource_id} if d.resource_type is not None else None
        ),
        "risk": {
            "score": d.risk_score,
            "level": d.risk_level,
            "agent_score": (d.agent_risk or {}).get("score"),
            "factors": d.risk_factors,
            "policy_version": d.policy_version,
            # What the policy decided (PROTOCOL.md section 10); rows from before it: asked.
            "outcome": (d.policy_outcome or {}).get("outcome", "ask"),
            "rule": (d.policy_outcome or {}).get("rule"),
        },
        "route": route_resource(d),
        "diff": d.diff,
        "priority": d.priority,
        "trace": trace,
        "labels": d.labels,
        "created_at": rfc3339(d.created_at),
        "expires_at": rfc3339(d.expires_at),
        "decision": decision,
        "execution": execution_resource(d) if d.status == "approved" else None,
    }


def route_resource(d: Deferral) -> dict[str, Any]:
    """Who may claim it and how many distinct approvers it needs (PROTOCOL.md section 10)."""
    approvers = getattr(d, "approvers", None)  # a new deferral's values have no approvals
    if approvers is None:
        approved = d.status == "approved"
        approvers = [n for n in d.decided_by or [] if n != "policy"] if approved else []
    return {
        "group": getattr(d, "route_group", None),
        "required_approvals": getattr(d, "required_approvals", None) or 1,
        "approvals": list(approvers),
        # Snooze and hand-over (docs/ROUTING.md): who alone may claim it, and not before when.
        "handed_to": getattr(d, "handed_to", None),
        "not_before": rfc3339(getattr(d, "not_before", None)),
    }


def edit_fields(d: Deferral) -> dict[str, Any]:
    original = getattr(d, "original_action_digest", None)  # a new deferral's values lack it
    return {
        "edited": original is not None,
        "original_action_digest": original,
        "action_patch": d.action_patch if original is not None else None,
    }


def execution_resource(d: Deferral) -> dict[str, Any] | None:
    e = d.execution
    if e is None:
        return None
    shown = {"outcome": e.outcome, "result": e.result, "reported_at": rfc3339(e.reported_at)}
    if e.credential is not None:  # {"type", "id"}, when the report named one (section 17)
        shown["credential"] = e.credential
    return shown


def agent_status(agent: Agent) -> dict[str, Any]:
    return {
        "agent": agent.slug,
        "state": agent.state,
        "changed_at": rfc3339(agent.state_changed_at),
        "changed_by": agent.state_changed_by,
        "reason": agent.state_reason,
    }
