"""API errors: every 4xx/5xx from /api/v1 is `{"error": {"code", "message", "details"?}}`."""

from __future__ import annotations

from typing import Any


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


def unauthorized() -> ApiError:
    """One answer for every authentication failure: no hint of which part failed."""
    return ApiError(401, "unauthorized", "request is not signed by a known agent")


def not_found() -> ApiError:
    return ApiError(404, "not_found", "no such deferral")
