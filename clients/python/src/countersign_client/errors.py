"""What can go wrong, as exceptions an agent can catch by meaning.

CountersignError
├── ApiError                  the service answered with an error (PROTOCOL.md section 3)
│   ├── InvalidRequest        400 malformed_json, 413, 415, 422 invalid_request (`details`)
│   ├── Unauthorized          401: wrong agent slug or secret, or the clock is off
│   ├── NotFound              404
│   ├── Conflict              409 idempotency_conflict or invalid_state (`code` says which)
│   ├── AgentKilled           423: the kill switch is on (also a `Killed`)
│   ├── RateLimited           429 (`retry_after` seconds)
│   └── ServerError           5xx
├── TransportError            no answer at all (refused, reset, timed out), after retries
├── ExecutionNotReported      the action ran, but its report did not reach the service
└── NotApproved               the action did not run, and why (`deferral`, `reason`)
    ├── Rejected, Expired, Cancelled, Killed     the deferral ended that way
    ├── ApprovalTimeout       still undecided when the caller stopped waiting
    ├── ActionMismatch        the approval is not for the action about to run
    ├── ApprovalLapsed        the approval's valid_until has passed
    └── AlreadyExecuted       an execution was reported for it already
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from countersign_client.resources import Deferral


class CountersignError(Exception):
    """Every error this client raises on purpose."""


class ApiError(CountersignError):
    """The service answered an error: `status`, and its body's `code`, `message`, `details`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[dict[str, Any]] | None = None,
    ):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []


class InvalidRequest(ApiError):
    """The request was refused as it stands (`details` name each failing field by pointer)."""


class Unauthorized(ApiError):
    """401: the service does not know this agent, the signature, or the timestamp."""


class NotFound(ApiError):
    """404: no such deferral, or one that belongs to another agent."""


class Conflict(ApiError):
    """409: `idempotency_conflict` (a key reused with another body) or `invalid_state`."""


class RateLimited(ApiError):
    """429: over the agent's pending cap, request rate or long-poll places."""

    def __init__(self, *args: Any, retry_after: float | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.retry_after = retry_after


class ServerError(ApiError):
    """5xx: the service failed (it changed nothing, by its contract)."""


class TransportError(CountersignError):
    """No answer from the service: connection refused or reset, or a timeout."""


class NotApproved(CountersignError):
    """The action was not run: `deferral` (when there is one) and `reason` say why."""

    def __init__(self, message: str, deferral: Deferral | None = None, reason: str | None = None):
        super().__init__(message)
        self.deferral = deferral
        self.reason = reason


class Rejected(NotApproved):
    """A reviewer (or the policy) rejected it; `reason` is theirs."""


class Expired(NotApproved):
    """Nobody decided before it expired."""


class Cancelled(NotApproved):
    """It was withdrawn (by this agent, or because the gate stopped waiting)."""


class Killed(NotApproved):
    """The agent's kill switch ended it (or was on when it was deferred)."""


class AgentKilled(ApiError, Killed):
    """423: the kill switch is on, so the service refused the request."""

    def __init__(self, status: int, code: str, message: str, details: list | None = None):
        ApiError.__init__(self, status, code, message, details)
        self.deferral = None
        self.reason = message


class ApprovalTimeout(NotApproved, TimeoutError):
    """Still pending or in review when the wait ran out."""


class ActionMismatch(NotApproved):
    """The approved action is not the one about to run (or cannot be run as approved)."""


class ReceiptRefused(NotApproved):
    """The client was given the service's JWKS and the approval's receipt does not verify
    against it (missing, forged, another key or action, expired): nothing runs."""


class ApprovalLapsed(NotApproved):
    """Approved, but `decision.valid_until` has passed: ask again."""


class AlreadyExecuted(NotApproved):
    """The deferral already carries an execution report: running it again would repeat it."""


class ExecutionNotReported(CountersignError):
    """The action ran (`outcome`, `result`) but the service did not record the report."""

    def __init__(self, message: str, deferral: Deferral, outcome: str, result: Any = None):
        super().__init__(message)
        self.deferral = deferral
        self.outcome = outcome
        self.result = result


ENDINGS: dict[str, type[NotApproved]] = {
    "rejected": Rejected,
    "expired": Expired,
    "cancelled": Cancelled,
    "killed": Killed,
}

_BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    404: NotFound,
    409: Conflict,
    413: InvalidRequest,
    415: InvalidRequest,
    422: InvalidRequest,
    423: AgentKilled,
    429: RateLimited,
}


def error_for_answer(status: int, body: Any, retry_after: float | None = None) -> ApiError:
    """The exception for an error answer, from its status and its JSON body (if any)."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {}
    code = error.get("code") if isinstance(error.get("code"), str) else f"http_{status}"
    message = error.get("message") if isinstance(error.get("message"), str) else ""
    details = error.get("details") if isinstance(error.get("details"), list) else []
    kind = _BY_STATUS.get(status, ServerError if status >= 500 else ApiError)
    if kind is RateLimited:
        return RateLimited(status, code, message, details, retry_after=retry_after)
    return kind(status, code, message, details)
