"""Deferrals, the approvals a quorum collects, decisions inside their undo window, and
the agent's execution reports."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from review.models.agents import Agent
from review.models.base import Base, JSONType, UTCDateTime, utcnow

PENDING_STATUSES = ("pending", "in_review")
TERMINAL_STATUSES = ("approved", "rejected", "expired", "cancelled", "killed")


def undecided_fields() -> dict[str, Any]:
    """A deferral's decision and review fields before anyone has acted on it (a fresh dict)."""
    return {
        "decided_at": None,
        "decision_reason": None,
        "decided_by": [],
        "valid_until": None,
        "receipt": None,
        "claimed_by": None,
        "lease_expires_at": None,
        "claimed_at": None,
        "not_before": None,
        "handed_to": None,
        "set_aside": None,
        "original_action": None,
        "original_action_digest": None,
        "action_patch": None,
    }


def _partial(name: str, *columns: str, not_null: str) -> Index:
    """An index of the rows whose `not_null` column is set: NULL at intake, so an intake
    writes no page of it. Every query it serves compares that column (`col = ?`,
    `col < ?`), which both planners take as `col IS NOT NULL` (migration 0030)."""
    where = text(f"{not_null} IS NOT NULL")
    return Index(name, *columns, sqlite_where=where, postgresql_where=where)


class Deferral(Base):
    __tablename__ = "deferrals"
    __table_args__ = (
        # Idempotency: one deferral per (agent, webhook-id); a racing duplicate fails here.
        UniqueConstraint("agent_id", "webhook_id", name="uq_deferrals_agent_webhook_id"),
        # The queue's "top N pending": WHERE status = 'pending' ORDER BY rank DESC LIMIT N.
        Index("ix_deferrals_status_rank", "status", "rank"),
        # An agent's undecided deferrals, which the kill switch ends:
        # UPDATE ... WHERE agent_id = ? AND status IN ('pending', 'in_review').
        Index("ix_deferrals_agent_status", "agent_id", "status"),
        # The expiry sweep: WHERE status IN (...) AND expires_at <= now.
        Index("ix_deferrals_status_expires", "status", "expires_at"),
        # A reviewer's batch: WHERE claimed_by = ? AND status = 'in_review'.
        _partial("ix_deferrals_claimed_by_status", "claimed_by", "status", not_null="claimed_by"),
        # Lapsed claims: WHERE status = 'in_review' AND lease_expires_at < now; a holder's
        # live claims: ... AND lease_expires_at >= now.
        _partial(
            "ix_deferrals_status_lease", "status", "lease_expires_at", not_null="lease_expires_at"
        ),
        # The queue by level: WHERE status = 'pending' AND risk_level = ? ORDER BY rank DESC,
        # and its capped counts per level.
        Index("ix_deferrals_status_level_rank", "status", "risk_level", "rank"),
        # An agent's page: its newest deferrals, and its rates over a window.
        Index("ix_deferrals_agent_created", "agent_id", "created_at"),
        # The policy page: every deferral of the last 7 days, WHERE created_at >= ?.
        Index("ix_deferrals_created", "created_at"),
        # A card's earlier decisions on the same action, and on the same resource
        # (review/reviewing/history.py).
        Index("ix_deferrals_action_digest", "action_digest"),
        _partial("ix_deferrals_resource", "resource_type", "resource_id", not_null="resource_id"),
        # A reviewer's handed-over items, first in their queue and batch:
        # WHERE status = 'pending' AND handed_to = ? (review/reviewing/set_aside.py).
        _partial("ix_deferrals_handed_to", "handed_to", not_null="handed_to"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    webhook_id: Mapped[str] = mapped_column(String(255))
    # SHA-256 of the canonical JSON of the request body: tells a retry from a conflict.
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending")

    tool: Mapped[str] = mapped_column(String(200))
    action: Mapped[dict[str, Any]] = mapped_column(JSONType)
    action_digest: Mapped[str] = mapped_column(String(71))
    summary: Mapped[str] = mapped_column(String(500))
    principal_id: Mapped[str] = mapped_column(String(200))
    # review/identity.py's key of principal_id: what separation of duties compares.
    principal_key: Mapped[str] = mapped_column(String(400), default="")
    principal_name: Mapped[str | None] = mapped_column(String(200))
    # What the principal's identity provider vouched for (review/intake/principals.py):
    # {"issuer", "subject", "email", "groups"}; None: the agent only claims principal_id.
    principal_verified: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    # What the human asked for, in their words (PROTOCOL.md section 17): untrusted text.
    intent: Mapped[str | None] = mapped_column(Text, nullable=True)
    rationale: Mapped[str | None] = mapped_column(Text)
    # {"before": ..., "after": ...}, each key present only when the agent sent it.
    state: Mapped[dict[str, Any]] = mapped_column(JSONType)
    diff: Mapped[dict[str, Any]] = mapped_column(JSONType)
    resource_type: Mapped[str | None] = mapped_column(String(200))
    resource_id: Mapped[str | None] = mapped_column(String(200))
    labels: Mapped[dict[str, str]] = mapped_column(JSONType)
    trace_id: Mapped[str | None] = mapped_column(String(200))
    trace_url: Mapped[str | None] = mapped_column(String(2000))

    risk_score: Mapped[int] = mapped_column(Integer)
    risk_level: Mapped[str] = mapped_column(String(16))
    risk_factors: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    agent_risk: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    policy_version: Mapped[str] = mapped_column(String(71))
    # What the policy decided at intake (review/intake/policy.py): {"outcome": "allow" |
    # "ask" | "deny", "rule": the rule that set it, or null}. Only allow and deny decide.
    policy_outcome: Mapped[dict[str, Any]] = mapped_column(
        JSONType, server_default='{"outcome": "ask", "rule": null}'
    )
    priority: Mapped[int] = mapped_column(Integer)
    # Static ordering key (see review/intake/priority.py): higher is more urgent, forever.
    rank: Mapped[int] = mapped_column(BigInteger)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decision_reason: Mapped[str | None] = mapped_column(Text)
    decided_by: Mapped[list[str]] = mapped_column(JSONType, default=list)
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # An approval's signed receipt, a compact JWS (review/reviewing/receipts.py).
    receipt: Mapped[str | None] = mapped_column(Text)

    # Reviewing: who holds it (status in_review), since when (the bound on the time in
    # view their browser reports: review/reviewing/reading.py) and until when.
    claimed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Routing (review/intake/policy_routes.py): the reviewer group that may claim it (None:
    # any reviewer) and the distinct approvers it needs; the approvals are `Approval` rows.
    route_group: Mapped[str | None] = mapped_column(String(100))
    required_approvals: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # Snooze and hand-over (review/reviewing/set_aside.py): not offered before `not_before`;
    # only `handed_to` (and admins) may claim it; `set_aside` says who did which, and why.
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)
    handed_to: Mapped[str | None] = mapped_column(String(64))
    set_aside: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # Edit, then approve (review/reviewing/edits.py): the agent's own action and its
    # digest, and the RFC 6902 patch from it to `action`; all NULL unless edited.
    original_action: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    original_action_digest: Mapped[str | None] = mapped_column(String(71))
    action_patch: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    # A canary's kind (review/canaries/): a known-bad test item an admin seeded, shown to
    # reviewers like any other and never to an agent. NULL for every real deferral.
    canary: Mapped[str | None] = mapped_column(String(32))

    agent: Mapped[Agent] = relationship(lazy="joined")
    # Read only for approved deferrals (nothing else can have one): see resources.py.
    execution: Mapped[Execution | None] = relationship(lazy="select", viewonly=True)
    # Written by review/reviewing/decisions.py with conditional statements, never through
    # the relationship; read on the card and in the resource.
    approvals: Mapped[list[Approval]] = relationship(
        lazy="select", viewonly=True, order_by="Approval.approved_at"
    )

    @property
    def snoozed_until(self) -> datetime | None:
        """The end of a snooze still running (review/reviewing/set_aside.py), else None."""
        if self.not_before is not None and self.not_before > utcnow():
            return self.not_before
        return None

    @property
    def approvers(self) -> list[str]:
        """Who approved it so far, in order (an approved deferral: who decided it)."""
        if self.status == "approved":
            return [name for name in self.decided_by or [] if name != "policy"]
        if (self.required_approvals or 1) < 2:
            return []  # one approval ends it: nothing to read
        return [a.username for a in self.approvals]


class Approval(Base):
    """One reviewer's approval of one deferral's action (PROTOCOL.md section 10's quorum).

    The primary key refuses a second approval by the same person, even a racing one. An
    edit deletes the approvals given before it (they were for another action; the
    `deferral.edited` event names them).
    """

    __tablename__ = "approvals"

    deferral_id: Mapped[str] = mapped_column(
        ForeignKey("deferrals.id", ondelete="CASCADE"), primary_key=True
    )
    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    approved_at: Mapped[datetime] = mapped_column(UTCDateTime)
    action_digest: Mapped[str] = mapped_column(String(71))


class Execution(Base):
    """The agent's report of what happened when it ran an approved action (PROTOCOL.md 4.4)."""

    __tablename__ = "executions"

    # One report per deferral: the primary key refuses a second, even a racing one.
    deferral_id: Mapped[str] = mapped_column(ForeignKey("deferrals.id"), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(16))
    action_digest: Mapped[str] = mapped_column(String(71))
    result: Mapped[Any] = mapped_column(JSONType, nullable=True)
    # The credential the agent acted with, {"type", "id"} (PROTOCOL.md section 17).
    credential: Mapped[dict[str, str] | None] = mapped_column(JSONType, nullable=True)
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime)
    webhook_id: Mapped[str] = mapped_column(String(255))


class PendingDecision(Base):
    """A reviewer's decision inside its undo window (review/reviewing/undo.py).

    Nothing of it shows outside this table until it takes effect: the deferral stays
    `in_review`, held by the reviewer, until `effective_at`, when the decision is taken
    as a decision taken then (review/reviewing/taking_effect.py). Undo deletes the row.
    """

    __tablename__ = "pending_decisions"
    __table_args__ = (
        # The sweep of due decisions: WHERE effective_at <= now ORDER BY effective_at.
        Index("ix_pending_decisions_effective_at", "effective_at"),
    )

    deferral_id: Mapped[str] = mapped_column(ForeignKey("deferrals.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    username: Mapped[str] = mapped_column(String(64))
    verdict: Mapped[str] = mapped_column(String(16))  # approve | reject
    reason: Mapped[str | None] = mapped_column(Text)
    seen_ms: Mapped[int | None] = mapped_column(Integer)  # time in view, as the browser sent it
    # Edit, then approve: the arguments approved instead of the agent's (None: not edited).
    edited_args: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime)  # when the reviewer decided
    effective_at: Mapped[datetime] = mapped_column(UTCDateTime)  # when the window closes
