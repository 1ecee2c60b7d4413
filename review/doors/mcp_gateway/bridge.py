"""An MCP tool call as a deferral: intake, the decision, the execution report.

The gateway is a process of the service itself (it has the database), so it creates the
deferral through intake exactly as `POST /api/v1/agents/{slug}/deferrals` does, as the
agent it fronts: the same admission, schema, strict-JSON checks, scoring and audit. The
body is shaped like a DeferralRequest: action `{tool: "mcp.<name>", args}`, a one-line
summary, the principal. Everything here is synchronous and opens its own short
sessions; the gateway's async side calls it in worker threads.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from review.agents.executions import report_execution
from review.agents.registry import Signer
from review.api.errors import STATUS
from review.api.jsonbody import parse_json
from review.api.schema import validate
from review.callbacks.long_poll import wait_until_ended
from review.errors import DomainError, NotFound
from review.intake.receive import receive_deferral
from review.intake.refusals import Refusal, record_refusal
from review.models import TERMINAL_STATUSES, Agent, Deferral, utcnow
from review.services import Services

log = logging.getLogger(__name__)

TOOL_PREFIX = "mcp."
SUMMARY_LIMIT = 500  # DeferralRequest's summary
ENDPOINT = "mcp tools/call"  # where a refused call is said to have come in, in the audit log


def default_principal(slug: str) -> str:
    """On whose behalf a call is made: the gateway does not authenticate its clients, so
    no person is known and the call is the agent's own, unattended."""
    return f"system:mcp:{slug}"


@dataclass(frozen=True)
class Call:
    """One `tools/call` as the gateway received it."""

    tool: str  # the MCP tool's name, without the mcp. prefix
    args: dict[str, Any]
    principal: str
    client: str | None = None  # the MCP client's name (its clientInfo), for reviewers

    def fingerprint(self) -> str:
        """Tells a repeat of this call (same tool, same arguments) from another call."""
        text = json.dumps([self.tool, self.args], sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(text.encode()).hexdigest()


def summary(call: Call) -> str:
    """`MCP call delete_database(name="prod")`, cut to the summary's 500 characters."""
    shown = ", ".join(
        f"{key}={json.dumps(value, ensure_ascii=False, default=str)}"
        for key, value in call.args.items()
    )
    text = f"MCP call {call.tool}({shown})"
    return text if len(text) <= SUMMARY_LIMIT else text[: SUMMARY_LIMIT - 1] + "…"


def deferral_body(call: Call) -> dict[str, Any]:
    labels = {"door": "mcp"}
    if call.client:
        labels["mcp_client"] = call.client[:200]
    return {
        "action": {"tool": TOOL_PREFIX + call.tool, "args": call.args},
        "summary": summary(call),
        "on_behalf_of": {"id": call.principal},
        "labels": labels,
    }


def checked_body(svc: Services, call: Call) -> dict[str, Any]:
    """The body as the API would accept it: within the size limit, strict JSON (no NUL,
    no lone surrogate, numbers RFC 8785 can hold, bounded depth), and the schema's shape.
    Raises the DomainError the API would answer with."""
    raw = json.dumps(deferral_body(call)).encode()  # NaN becomes NaN, which parse_json refuses
    limit = svc.settings.max_body_bytes
    if len(raw) > limit:
        raise DomainError(f"the call's arguments are over {limit} bytes")
    body = parse_json(raw, svc.settings.max_json_depth)
    validate("DeferralRequest", body)
    return body


@dataclass(frozen=True)
class State:
    """What the gateway needs of a deferral to answer the call it stands for."""

    id: str
    status: str
    tool: str  # the MCP tool's name (the action's tool without the mcp. prefix)
    args: dict[str, Any]  # the action's arguments: the approved ones once approved
    digest: str
    reason: str | None
    decided_by: tuple[str, ...]
    expires_at: datetime
    valid_until: datetime | None
    executed: bool
    agent_killed: bool

    @property
    def decided(self) -> bool:
        return self.status in TERMINAL_STATUSES


def read_state(svc: Services, deferral_id: str) -> State:
    with svc.db.read() as session:
        deferral = session.get(Deferral, deferral_id)
        if deferral is None:
            raise NotFound("no such deferral")
        agent = session.get(Agent, deferral.agent_id)
        return State(
            id=deferral.id,
            status=deferral.status,
            tool=deferral.tool.removeprefix(TOOL_PREFIX),
            args=dict(deferral.action.get("args") or {}),
            digest=deferral.action_digest,
            reason=deferral.decision_reason,
            decided_by=tuple(deferral.decided_by or ()),
            expires_at=deferral.expires_at,
            valid_until=deferral.valid_until,
            executed=deferral.execution is not None,
            agent_killed=agent.state == "killed",
        )


def signer_for(svc: Services, slug: str) -> Signer:
    with svc.db.read() as session:
        signer = svc.secrets.signer(session, slug)
    if signer is None:
        raise NotFound(f"agent {slug} is not registered (or was deactivated)")
    return signer


def receive(svc: Services, slug: str, webhook_id: str, call: Call) -> State:
    """The call's deferral (created, or the one this webhook-id created before), as it
    stands now; a refusal is audited as the API audits it, then raised."""
    signer = signer_for(svc, slug)
    try:
        received = receive_deferral(svc, signer, webhook_id, lambda: checked_body(svc, call))
    except DomainError as exc:
        refusal = Refusal(STATUS.get(exc.code, 422), exc.code, exc.message, exc.details)
        record_refusal(svc, signer, refusal, webhook_id=webhook_id, endpoint=ENDPOINT)
        raise
    return read_state(svc, received.deferral.id)


def wait_for_decision(
    svc: Services, deferral_id: str, seconds: float, gone: Callable[[], bool]
) -> State:
    """The deferral once it is decided, `seconds` have passed or `gone()` says nobody
    waits for it any more. Holds a thread but no database connection while it waits
    (review/callbacks/long_poll.py)."""

    def read_status() -> tuple[bool, State]:
        state = read_state(svc, deferral_id)
        return state.decided, state

    return wait_until_ended(svc.waiters, deferral_id, seconds, read_status, gone)


def why_not_run(state: State, now: datetime | None = None) -> str | None:
    """Why an approved call may not be forwarded now, or None: it may."""
    now = now or utcnow()
    if state.status != "approved":
        return f"it is {state.status}, not approved"
    if state.executed:
        return "it was already executed once"
    if state.valid_until is None or state.valid_until < now:
        return "the approval is no longer valid"
    if state.agent_killed:
        return "the agent's kill switch is on: nothing may run"
    return None


def storable_result(svc: Services, result: Any) -> Any:
    """The upstream result as the execution keeps it: as it is when it is strict JSON
    within the body limit; otherwise its size and digest, so the log cannot be flooded."""
    raw = json.dumps(result, ensure_ascii=False, default=str).encode()
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    if len(raw) > svc.settings.max_body_bytes:
        return {"omitted": "over the size limit", "bytes": len(raw), "digest": digest}
    try:
        return parse_json(raw, svc.settings.max_json_depth)
    except DomainError as exc:
        return {"omitted": explain(exc), "bytes": len(raw), "digest": digest}


def explain(error: DomainError) -> str:
    """The refusal in one line, with where it failed (the first few JSON Pointers)."""
    where = "; ".join(f"{d['path'] or '/'} {d['message']}" for d in error.details[:3])
    return f"{error.message} ({where})" if where else error.message


def report(svc: Services, slug: str, state: State, succeeded: bool, result: Any) -> None:
    """Report the forwarded call as the deferral's execution (once: a second is refused).

    A refusal here means the call ran although the domain no longer allowed it (the
    switch was flipped in between); the domain has recorded it as a violation."""
    body = {
        "outcome": "succeeded" if succeeded else "failed",
        "action_digest": state.digest,
        "result": storable_result(svc, result),
    }
    try:
        report_execution(svc, state.id, signer_for(svc, slug), body, f"mcp_execution_{state.id}")
    except DomainError as exc:
        log.warning("execution of %s not recorded: %s", state.id, exc.message)
