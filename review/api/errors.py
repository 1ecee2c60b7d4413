"""API errors: every 4xx/5xx from /api/v1 is `{"error": {"code", "message", "details"?}}`.

The domain raises `review.errors.DomainError`s carrying PROTOCOL.md's codes; `STATUS`
below is the one place that gives each code its HTTP status. `ApiError` is for what
only HTTP knows: authentication, body size, media type, unknown routes.
"""

from __future__ import annotations

from typing import Any

from review.errors import DomainError

# PROTOCOL.md section 3: the status of each code the domain can raise.
STATUS = {
    "malformed_json": 400,
    "not_found": 404,
    "idempotency_conflict": 409,
    "invalid_state": 409,
    "conflict": 409,
    "invalid_request": 422,
    "agent_killed": 423,
    "rate_limited": 429,
    "invalid_principal_token": 422,  # PROTOCOL.md section 17
    "principal_keys_unavailable": 503,  # the issuer's keys cannot be fetched: retry later
}

# The codes only HTTP knows (ApiError): parsing, authentication, routing, size, media type.
HTTP_STATUS = {
    "bad_request": 400,
    "unauthorized": 401,
    "method_not_allowed": 405,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "not_found": 404,
}


def codes_for(status: int) -> list[str]:
    """Every code an answer with this status can carry (the OpenAPI document lists them)."""
    return sorted({code for code, s in (*STATUS.items(), *HTTP_STATUS.items()) if s == status})


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return {"error": error}


def from_domain(error: DomainError) -> ApiError:
    """The answer PROTOCOL.md gives a refusal of the domain."""
    headers = {}
    retry_after = getattr(error, "retry_after", None)  # RateLimited, KeysUnavailable
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return ApiError(
        STATUS.get(error.code, 422),
        error.code,
        error.message,
        error.details or None,
        headers=headers,
    )


def as_api_error(error: Exception) -> ApiError:
    """An ApiError as it is; a DomainError as the API answers it."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, DomainError):
        return from_domain(error)
    raise TypeError(f"not a refusal: {error!r}")


def unauthorized() -> ApiError:
    """One answer for every authentication failure: no hint of which part failed."""
    return ApiError(401, "unauthorized", "request is not signed by a known agent")


def not_found() -> ApiError:
    return ApiError(404, "not_found", "no such deferral")
