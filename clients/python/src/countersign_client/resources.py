"""The service's answers as Python objects: a deferral, its decision, the agent's status.

Each keeps the JSON it came from as `.raw`, so fields added to the contract later are
there before this client knows their names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

PENDING_STATUSES = frozenset({"pending", "in_review"})
TERMINAL_STATUSES = frozenset({"approved", "rejected", "expired", "cancelled", "killed"})


def parse_time(text: Any) -> datetime | None:
    """An RFC 3339 time from the service (`2026-11-20T10:00:00Z`), aware; None stays None."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class Decision:
    """How a deferral ended (`outcome` is its terminal status)."""

    outcome: str
    reason: str | None
    decided_by: tuple[str, ...]
    decided_at: datetime | None
    valid_until: datetime | None  # approvals only: run before this, or ask again
    edited: bool = False  # a reviewer approved edited args (PROTOCOL.md section 10)
    original_action_digest: str | None = None  # the agent's own digest, when edited
    receipt: str | None = None  # a signed approval receipt, when the service sends one
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Decision:
        return cls(
            outcome=str(raw.get("outcome")),
            reason=raw.get("reason"),
            decided_by=tuple(raw.get("decided_by") or ()),
            decided_at=parse_time(raw.get("decided_at")),
            valid_until=parse_time(raw.get("valid_until")),
            edited=raw.get("edited") is True,
            original_action_digest=raw.get("original_action_digest"),
            receipt=raw.get("receipt"),
            raw=raw,
        )


class Deferral:
    """One deferral as the service last described it (PROTOCOL.md section 5)."""

    __slots__ = ("raw",)

    def __init__(self, raw: dict[str, Any]):
        if not (
            isinstance(raw, dict)
            and isinstance(raw.get("id"), str)
            and isinstance(raw.get("status"), str)
        ):
            raise ValueError("not a deferral resource: it needs an id and a status")
        self.raw = raw

    @property
    def id(self) -> str:
        return self.raw["id"]

    @property
    def status(self) -> str:
        """pending, in_review, approved, rejected, expired, cancelled or killed."""
        return self.raw["status"]

    @property
    def agent(self) -> str | None:
        return self.raw.get("agent")

    @property
    def action(self) -> dict[str, Any]:
        """`{"tool", "args"}`: once approved, the action to run (edited args included)."""
        return self.raw.get("action") or {}

    @property
    def action_digest(self) -> str | None:
        return self.raw.get("action_digest")

    @property
    def summary(self) -> str | None:
        return self.raw.get("summary")

    @property
    def on_behalf_of(self) -> dict[str, Any]:
        return self.raw.get("on_behalf_of") or {}

    @property
    def risk(self) -> dict[str, Any]:
        return self.raw.get("risk") or {}

    @property
    def labels(self) -> dict[str, str]:
        return self.raw.get("labels") or {}

    @property
    def decision(self) -> Decision | None:
        decided = self.raw.get("decision")
        return Decision.from_json(decided) if isinstance(decided, dict) else None

    @property
    def execution(self) -> dict[str, Any] | None:
        """`{"outcome", "result", "reported_at"}` once an execution was reported."""
        return self.raw.get("execution")

    @property
    def created_at(self) -> datetime | None:
        return parse_time(self.raw.get("created_at"))

    @property
    def expires_at(self) -> datetime | None:
        return parse_time(self.raw.get("expires_at"))

    @property
    def terminal(self) -> bool:
        """Whether it has ended (approved, rejected, expired, cancelled or killed)."""
        return self.status in TERMINAL_STATUSES

    @property
    def approved(self) -> bool:
        return self.status == "approved"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Deferral) and other.raw == self.raw

    __hash__ = None  # type: ignore[assignment]  # mutable underneath, like a dict

    def __repr__(self) -> str:
        return f"<Deferral {self.id} {self.status} {self.action.get('tool')!r}>"


class Approval(Deferral):
    """An approved deferral handed to a gate's body; set `result` to report it."""

    __slots__ = ("result",)

    def __init__(self, raw: dict[str, Any]):
        super().__init__(raw)
        self.result: Any = None

    @property
    def args(self) -> Any:
        """The approved args: what to run."""
        return self.action.get("args")


@dataclass(frozen=True)
class AgentStatus:
    """The agent's kill switch (PROTOCOL.md 4.5)."""

    agent: str
    state: str  # "active" or "killed"
    changed_at: datetime | None
    changed_by: str | None
    reason: str | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def killed(self) -> bool:
        return self.state == "killed"

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> AgentStatus:
        if not isinstance(raw, dict) or not isinstance(raw.get("state"), str):
            raise ValueError("not an agent status: it needs a state")
        return cls(
            agent=str(raw.get("agent")),
            state=raw["state"],
            changed_at=parse_time(raw.get("changed_at")),
            changed_by=raw.get("changed_by"),
            reason=raw.get("reason"),
            raw=raw,
        )
