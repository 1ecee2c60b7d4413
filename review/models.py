"""The tables, in SQLAlchemy 2.0 style. Migrations in migrations/ create them."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

JSONType = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on both databases (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


ROLES = ("admin", "reviewer", "auditor")


def new_session_token() -> str:
    return secrets.token_urlsafe(32)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        # Single sign-on finds its user by the provider's identity (migration 0018).
        UniqueConstraint("sso_issuer", "sso_subject", name="uq_users_sso_identity"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str | None] = mapped_column(String(254))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Every browser session of the user carries this; a new one (logout, password
    # change, disabling) ends them all. Empty never matches (migration 0009).
    session_token: Mapped[str] = mapped_column(String(64), default=new_session_token)
    # Set with each login's audit event (migration 0015); None: not since that upgrade.
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set for a user made by single sign-on (review/sso_accounts.py): who they are at
    # the OpenID provider. Such a user has no password here.
    sso_issuer: Mapped[str | None] = mapped_column(String(255))
    sso_subject: Mapped[str | None] = mapped_column(String(255))
    # Single-key shortcuts on the reviewer pages (static/review.js); off for people whose
    # speech input or tremor fires them by accident (WCAG 2.1.4, PROTOCOL.md section 16).
    keyboard_shortcuts: Mapped[bool] = mapped_column(Boolean, default=True)


class Agent(Base):
    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    callback_url: Mapped[str | None] = mapped_column(String(2000))
    # Kill switch: "active" or "killed", with who flipped it, when and why.
    state: Mapped[str] = mapped_column(String(16), default="active")
    state_changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    state_changed_by: Mapped[str] = mapped_column(String(200))
    state_reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Breaker overrides ("N/M" or "0"; K or 0); None follows the settings.
    breaker_flood: Mapped[str | None] = mapped_column(String(32))
    breaker_rejections: Mapped[int | None] = mapped_column(Integer)
    # Where a trace id links to when the agent sends no trace URL: "...{trace_id}...".
    trace_url_template: Mapped[str | None] = mapped_column(String(2000))
    # Deactivated agents are kept for the record; their secrets no longer verify.
    deactivated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Its pending and in_review deferrals, counted by triggers on `deferrals` (migration
    # 0007): never written by the application, read by intake for the pending cap.
    undecided: Mapped[int] = mapped_column(Integer, server_default="0", default=0)

    owners: Mapped[list[User]] = relationship(secondary="agent_owners")
    secrets: Mapped[list[AgentSecret]] = relationship(
        back_populates="agent", order_by="AgentSecret.id"
    )


class AgentOwner(Base):
    __tablename__ = "agent_owners"

    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)


class AgentSecret(Base):
    """A signing secret, encrypted with a key derived from SECRET_KEY.

    HMAC verification needs the secret itself, so it cannot be hashed; it is sealed at
    rest and no page or command shows it after creation. `fingerprint` identifies it.
    """

    __tablename__ = "agent_secrets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), index=True)
    ciphertext: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set when the secret is rotated out: it keeps verifying until then.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    agent: Mapped[Agent] = relationship(back_populates="secrets")


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
        Index("ix_deferrals_claimed_by_status", "claimed_by", "status"),
        # Lapsed claims: WHERE status = 'in_review' AND lease_expires_at < now.
        Index("ix_deferrals_status_lease", "status", "lease_expires_at"),
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
        Index("ix_deferrals_resource", "resource_type", "resource_id"),
        # A reviewer's handed-over items, first in their queue and batch:
        # WHERE status = 'pending' AND handed_to = ? (review/reviewing/set_aside.py).
        Index("ix_deferrals_handed_to", "handed_to"),
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


class Canary(Base):
    """Who seeded a canary deferral and what became of it (review/canaries/)."""

    __tablename__ = "canaries"
    __table_args__ = (
        # The admin page's list, newest first.
        Index("ix_canaries_seeded_at", "seeded_at"),
        # Catch rates per reviewer over a window: WHERE decided_at >= ? GROUP BY decided_by.
        Index("ix_canaries_decided_at", "decided_at", "decided_by"),
    )

    deferral_id: Mapped[str] = mapped_column(ForeignKey("deferrals.id"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    seeded_by: Mapped[str] = mapped_column(String(64))
    seeded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    outcome: Mapped[str | None] = mapped_column(String(16))  # "caught", "missed"; None: open
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    seconds_in_view: Mapped[float | None] = mapped_column(Float)


class AuditEvent(Base):
    """One link of the hash chain. Rows are only ever inserted."""

    __tablename__ = "audit_events"
    __table_args__ = (
        # A deferral's evidence chain: WHERE deferral_id = ? ORDER BY seq.
        Index("ix_audit_events_deferral_seq", "deferral_id", "seq"),
        # An agent's history: WHERE agent = ? ORDER BY seq.
        Index("ix_audit_events_agent_seq", "agent", "seq"),
        # An agent's page: its flips, trips and violations, newest first.
        Index("ix_audit_events_agent_type_seq", "agent", "event_type", "seq"),
        # The /audit page's filters, each in sequence order (keyset pagination).
        Index("ix_audit_events_actor_seq", "actor_id", "seq"),
        Index("ix_audit_events_type_seq", "event_type", "seq"),
        Index("ix_audit_events_at", "at"),
        # One event per place in each shard's chain (a fork is refused by the database).
        Index("ix_audit_events_shard_seq", "shard", "shard_seq", unique=True),
    )

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor_kind: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str] = mapped_column(String(200))
    event_type: Mapped[str] = mapped_column(String(64))
    agent: Mapped[str | None] = mapped_column(String(63))
    deferral_id: Mapped[str | None] = mapped_column(String(40))
    # Deterministic JSON text (sorted keys, no spaces: audit/hashing.py payload_json),
    # stored exactly as hashed; the event's hash takes it in as its SHA-256.
    payload: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Which chain (review/audit/hashing.py shard_of) and the place in it. `seq` orders
    # every event of every shard; `shard_seq` is None for the events of the single
    # chain before shards (migration 0025): shard 0, at place `seq`, hashed without both.
    shard: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    shard_seq: Mapped[int | None] = mapped_column(BigInteger)


class AuditCheckpoint(Base):
    """A signed statement "the chain had `seq` events, ending in `head_hash`, at `at`".

    Signed with the service's ed25519 key (review/audit/checkpoints.py); only ever inserted.
    """

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, index=True)  # the events in all shards
    # Before shards: the chain's last hash. Since: the Merkle root over `heads`.
    head_hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    key_id: Mapped[str] = mapped_column(String(64))  # SHA-256 of the raw public key
    signature: Mapped[str] = mapped_column(String(128))  # base64
    # JSON [[shard, shard_seq, hash], ...] for every shard; None for a checkpoint of the
    # single chain before shards (review/audit/checkpoints.py).
    heads: Mapped[str | None] = mapped_column(Text)


class AuditHead(Base):
    """One shard's head: how many events its chain has, and the last one's hash.

    Writers lock the heads of the shards they append to, so each shard's chain has one
    order; writes to different shards never wait for each other (docs/SCALING.md).
    """

    __tablename__ = "audit_head"

    shard: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)  # the shard's last shard_seq
    hash: Mapped[str] = mapped_column(String(64))


class AuditEpoch(Base):
    """From global sequence number `first_seq` on, new events spread over `shards` chains.

    Epoch 0 is the single chain as it was before shards (migration 0025). Rows are only
    added (`countersign audit shards N`); a head row is never removed.
    """

    __tablename__ = "audit_epochs"

    epoch: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    shards: Mapped[int] = mapped_column(Integer)
    first_seq: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class OutboxEvent(Base):
    """A callback to deliver, written in the transaction of the change it reports.

    Its id is the `webhook-id` of every attempt, so receivers can deduplicate.
    """

    __tablename__ = "outbox_events"
    __table_args__ = (
        # The relay: WHERE status = 'pending' AND next_attempt_at <= now ORDER BY next_attempt_at.
        Index("ix_outbox_status_next", "status", "next_attempt_at"),
        # An agent's deliveries: WHERE agent_id = ? ORDER BY created_at DESC.
        Index("ix_outbox_agent_created", "agent_id", "created_at"),
        # A deferral's callback state on its page.
        Index("ix_outbox_deferral", "deferral_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    deferral_id: Mapped[str | None] = mapped_column(String(40))
    event_type: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)  # the exact JSON that is signed and sent
    status: Mapped[str] = mapped_column(String(16), default="pending")  # delivered, dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DeliveryAttempt(Base):
    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # An event's attempts: WHERE event_id = ? ORDER BY id.
    event_id: Mapped[str] = mapped_column(ForeignKey("outbox_events.id"), index=True)
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer)


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
