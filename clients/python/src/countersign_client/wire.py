"""The requests this client sends (PROTOCOL.md section 4) and how it reads the answers.

Shared by the sync and the async client: nothing here does I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from countersign_client.errors import ApiError, error_for_answer
from countersign_client.resources import AgentStatus, Deferral
from countersign_client.retrying import retry_after
from countersign_client.signing import new_message_id

MAX_WAIT = 60  # the longest long-poll the service holds (PROTOCOL.md 4.2)
MAX_SUMMARY = 500
MAX_REASON = 2000
OUTCOMES = ("succeeded", "failed")


@dataclass(frozen=True)
class Call:
    """One request: sent as many times as it is retried, always with the same `msg_id`."""

    method: str
    path: str
    body: bytes = b""  # GET requests sign the empty body
    msg_id: str = field(default_factory=new_message_id)
    params: dict[str, str] | None = None
    read_timeout: float | None = None  # None: the client's own timeout


def json_bytes(payload: Any) -> bytes:
    """The body as sent: compact JSON, ASCII, no NaN or Infinity (ValueError/TypeError)."""
    return json.dumps(payload, allow_nan=False, separators=(",", ":")).encode()


def principal(on_behalf_of: str | dict[str, Any] | None, default: str) -> dict[str, Any]:
    """`on_behalf_of` as the request carries it: `{"id", "display_name"?}`."""
    if on_behalf_of is None:
        return {"id": default}
    if isinstance(on_behalf_of, str):
        return {"id": on_behalf_of}
    if isinstance(on_behalf_of, dict) and isinstance(on_behalf_of.get("id"), str):
        return dict(on_behalf_of)
    raise TypeError("on_behalf_of is a principal id (str) or a dict with an 'id'")


def one_line(summary: str) -> str:
    """The summary as a reviewer reads it first: at most 500 characters."""
    if not isinstance(summary, str) or not summary.strip():
        raise ValueError("summary is one line of text for the reviewer")
    return summary if len(summary) <= MAX_SUMMARY else summary[: MAX_SUMMARY - 1] + "…"


def deferral_request(
    *,
    tool: str,
    args: dict[str, Any],
    summary: str,
    on_behalf_of: dict[str, Any],
    before: Any = None,
    after: Any = None,
    rationale: str | None = None,
    intent: str | None = None,
    resource: dict[str, str] | None = None,
    trace_url: str | None = None,
    trace_id: str | None = None,
    labels: dict[str, str] | None = None,
    expires_in: int | None = None,
    risk: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The body of `POST /api/v1/agents/{agent}/deferrals`; None leaves a field out."""
    if not isinstance(args, dict):
        raise TypeError("args is a dict of the tool's arguments")
    body: dict[str, Any] = {
        "action": {"tool": tool, "args": args},
        "summary": one_line(summary),
        "on_behalf_of": on_behalf_of,
    }
    trace = {k: v for k, v in (("id", trace_id), ("url", trace_url)) if v is not None}
    optional = {
        "before": before,
        "after": after,
        "rationale": rationale,
        "intent": intent,
        "resource": resource,
        "trace": trace or None,
        "labels": labels,
        "expires_in": expires_in,
        "risk": risk,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    return body


def defer_call(agent: str, request: dict[str, Any], idempotency_key: str | None) -> Call:
    path = f"/api/v1/agents/{quote(agent, safe='')}/deferrals"
    return Call("POST", path, json_bytes(request), idempotency_key or new_message_id())


def read_call(deferral_id: str, wait: int | None = None, margin: float = 15.0) -> Call:
    path = f"/api/v1/deferrals/{quote(deferral_id, safe='')}"
    if wait is None:
        return Call("GET", path)
    wait = max(0, min(MAX_WAIT, int(wait)))
    return Call("GET", path, params={"wait": str(wait)}, read_timeout=wait + margin)


def cancel_call(deferral_id: str, reason: str) -> Call:
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError("say why: a cancellation needs a reason")
    path = f"/api/v1/deferrals/{quote(deferral_id, safe='')}/cancel"
    return Call("POST", path, json_bytes({"reason": reason[:MAX_REASON]}))


def execution_call(
    deferral: Deferral, outcome: str, result: Any, idempotency_key: str | None
) -> Call:
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome is one of {OUTCOMES}, not {outcome!r}")
    if not deferral.action_digest:
        raise ValueError("the deferral has no action_digest to report against")
    report: dict[str, Any] = {"outcome": outcome, "action_digest": deferral.action_digest}
    if result is not None:
        report["result"] = result
    path = f"/api/v1/deferrals/{quote(deferral.id, safe='')}/execution"
    return Call("POST", path, json_bytes(report), idempotency_key or new_message_id())


def timeout_reason(timeout: float) -> str:
    return f"the agent stopped waiting for a decision after {timeout:g} s"


def status_call(agent: str) -> Call:
    return Call("GET", f"/api/v1/agents/{quote(agent, safe='')}/status")


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:  # not JSON, or not UTF-8
        return None


def error_of(response: httpx.Response) -> ApiError:
    """The typed error for an error answer (4xx, 5xx)."""
    return error_for_answer(response.status_code, _body(response), retry_after(response))


def answered_json(response: httpx.Response) -> Any:
    """The answer's JSON; the typed ApiError for an error answer."""
    if response.status_code >= 400:
        raise error_of(response)
    body = _body(response)
    if body is None:
        raise ApiError(response.status_code, "unexpected_answer", "the answer is not JSON")
    return body


def deferral_from(response: httpx.Response) -> Deferral:
    body = answered_json(response)
    try:
        return Deferral(body)
    except ValueError:
        raise ApiError(response.status_code, "unexpected_answer", "not a deferral") from None


def status_from(response: httpx.Response) -> AgentStatus:
    body = answered_json(response)
    try:
        return AgentStatus.from_json(body)
    except ValueError:
        raise ApiError(response.status_code, "unexpected_answer", "not a status") from None
