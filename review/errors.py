"""Errors the domain raises; the API, the pages and the commands turn them into answers.

Each error that an agent can meet carries the `code` PROTOCOL.md section 3 names; the
HTTP status for each code is chosen in one place, `review/api/errors.py`. Messages are
fit to show the person or agent who made the request.
"""

from __future__ import annotations


class DomainError(Exception):
    """A request the domain refuses, with a message fit to show the person who made it."""

    code = "invalid_request"

    def __init__(self, message: str, *, details: list[dict[str, str]] | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or []


class Conflict(DomainError):
    """The thing to create exists already (a user, an agent)."""

    code = "conflict"


class InvalidRequest(DomainError):
    """The request breaks the published schema or a rule of the contract; `details` say where."""

    code = "invalid_request"


class MalformedJson(DomainError):
    """The body is not JSON the service can read (PROTOCOL.md section 3)."""

    code = "malformed_json"


class NotFound(DomainError):
    """No such deferral, or one that belongs to another agent."""

    code = "not_found"


class InvalidState(DomainError):
    """The action is not allowed in the deferral's current status."""

    code = "invalid_state"


class IdempotencyConflict(DomainError):
    """A webhook-id seen before, with a different body."""

    code = "idempotency_conflict"


class AgentKilled(DomainError):
    """The agent's kill switch is on."""

    code = "agent_killed"


class RateLimited(DomainError):
    """Over the agent's request rate or pending cap; try again after `retry_after` seconds."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class InvalidPrincipalToken(DomainError):
    """`on_behalf_of.token` does not prove the claimed principal (PROTOCOL.md section 17)."""

    code = "invalid_principal_token"
