"""The audit log: its hash-chained events, each shard's head and epoch, signed checkpoints."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from review.models.base import Base, UTCDateTime

# What an agent's page lists of its events (review/agents/overview.py): its flips and
# trips, and its violations. Only these are in ix_audit_events_agent_type_seq, so the
# events of a deferral's life (most events, two at every intake) write no page of it.
AGENT_FLIP_EVENTS = (
    "agent.created",
    "agent.killed",
    "agent.revived",
    "agent.breaker_tripped",
    "agent.updated",
    "agent.secret_rotated",
    "agent.deactivated",
    "agent.flip_refused",
)
AGENT_PAGE_EVENTS = (*AGENT_FLIP_EVENTS, "execution.violation")
# The index's condition, and a condition of every query it serves, word for word: SQLite
# uses a partial index only for a query whose WHERE has its condition's terms (an IN
# list is not compared element by element). Migration 0030 writes the same text.
AGENT_PAGE_EVENT_CONDITION = text(
    "event_type IN (" + ", ".join(f"'{t}'" for t in AGENT_PAGE_EVENTS) + ")"
)


class AuditEvent(Base):
    """One link of the hash chain. Rows are only ever inserted."""

    __tablename__ = "audit_events"
    __table_args__ = (
        # A deferral's evidence chain: WHERE deferral_id = ? ORDER BY seq.
        Index("ix_audit_events_deferral_seq", "deferral_id", "seq"),
        # An agent's history: WHERE agent = ? ORDER BY seq.
        Index("ix_audit_events_agent_seq", "agent", "seq"),
        # An agent's page: its flips, trips and violations, newest first; only those.
        Index(
            "ix_audit_events_agent_type_seq",
            "agent",
            "event_type",
            "seq",
            sqlite_where=AGENT_PAGE_EVENT_CONDITION,
            postgresql_where=AGENT_PAGE_EVENT_CONDITION,
        ),
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
