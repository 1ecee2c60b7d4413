"""AAP's refusals, and the one table from error codes to AAP's HTTP status and error type.

The domain raises `review.errors` errors (with PROTOCOL.md's codes) and, for what only
AAP has, the errors below (with AAP's codes). `answer()` gives each its status and its
`error.type` from AAP's list (invalid_request, authentication, authorization, not_found,
conflict, rate_limit, dependency, internal); the door writes the body
`{"error": {"type", "code", "message", "param"?, "request_id"}}`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from review.errors import DomainError, RateLimited


class AapRefused(DomainError):
    """A refusal that only AAP has; `code` is AAP's."""

    def __init__(self, code: str, message: str, *, param: str | None = None):
        details = [{"path": "/" + param, "message": message}] if param else None
        super().__init__(message, details=details)
        self.code = code


# code -> (HTTP status, AAP error type)
ANSWERS: dict[str, tuple[int, str]] = {
    # review.errors codes (PROTOCOL.md section 3), as AAP answers them
    "malformed_json": (400, "invalid_request"),
    "invalid_request": (400, "invalid_request"),
    "not_found": (404, "not_found"),
    "idempotency_conflict": (409, "conflict"),
    "invalid_state": (409, "conflict"),
    "conflict": (409, "conflict"),
    # A stopped agent's credential permits nothing: AAP clients deny the call, and say
    # whoever manages the agent must act (403 is "the credential does not permit it").
    "agent_killed": (403, "authorization"),
    "rate_limited": (429, "rate_limit"),
    # AAP's own
    "missing_idempotency_key": (400, "invalid_request"),
    "invalid_webhook_url": (400, "invalid_request"),
    "unsupported_delivery_type": (400, "invalid_request"),
    "payload_too_large": (413, "invalid_request"),
    "unsupported_media_type": (415, "invalid_request"),
    "invalid_credential": (401, "authentication"),
    "provisioner_token_required": (403, "authorization"),
    "already_terminal": (409, "conflict"),
    "already_consumed": (409, "conflict"),
    "not_approved": (409, "conflict"),
    "approval_expired": (409, "conflict"),
    "not_consumed": (409, "conflict"),
    "outcome_conflict": (409, "conflict"),
    "webhook_verification_failed": (422, "invalid_request"),
    "method_not_allowed": (405, "invalid_request"),
    "internal": (500, "internal"),
}


@dataclass(frozen=True)
class Answer:
    status: int
    type: str
    code: str
    message: str
    param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def body(self, request_id: str) -> dict:
        error = {"type": self.type, "code": self.code, "message": self.message}
        if self.param:
            error["param"] = self.param
        error["request_id"] = request_id
        return {"error": error}


def answer(error: DomainError) -> Answer:
    """How the door answers a refusal of the domain."""
    status, kind = ANSWERS.get(error.code, (400, "invalid_request"))
    headers = {}
    if isinstance(error, RateLimited):
        headers["Retry-After"] = str(error.retry_after)
    param, message = None, error.message or error.code
    if error.details:  # the first failing field, as AAP names it (`param`, not a pointer)
        first = error.details[0]
        param = first["path"].lstrip("/").split("/")[0] or None
        if not isinstance(error, AapRefused):
            message = f"{message}: {first['path'] or 'the body'} {first['message']}"
    return Answer(status, kind, error.code, message, param, headers)


def refused(code: str, message: str) -> Answer:
    """An answer for what only HTTP knows (credentials, routes, sizes)."""
    status, kind = ANSWERS[code]
    return Answer(status, kind, code, message)
