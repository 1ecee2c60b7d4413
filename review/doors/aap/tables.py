"""The door's tables (migration 0012), on the models' Base so one metadata holds them all."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from review.models import Base, UTCDateTime, utcnow


class AapInstance(Base):
    """An instance registered with `POST /aap/v1/instances`, owned by one agent."""

    __tablename__ = "aap_instances"
    __table_args__ = (
        # A registration retried with its Idempotency-Key finds the instance it made.
        UniqueConstraint("agent_id", "provision_key", name="uq_aap_instances_agent_key"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # a UUID
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    name: Mapped[str] = mapped_column(String(200))
    # The verified webhook receiver for `request.resolved`; None: the instance polls.
    delivery_url: Mapped[str | None] = mapped_column(String(2000))
    registration_id: Mapped[str | None] = mapped_column(String(36))
    signing_secret: Mapped[str | None] = mapped_column(Text)  # sealed (review/sealing.py)
    provision_key: Mapped[str] = mapped_column(String(255))
    provision_hash: Mapped[str] = mapped_column(String(64))
    # The registration's answer, credential included, sealed: what a retry answers.
    provisioned: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AapToken(Base):
    """A bearer token, kept as its SHA-256: the agent's own, or an instance's credential."""

    __tablename__ = "aap_tokens"
    __table_args__ = (
        # Issuing a new agent token retires the agent's current ones: WHERE agent_id = ?.
        # Named as migration 0012 created it, so autogenerate sees no difference.
        Index("ix_aap_tokens_agent", "agent_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    instance_id: Mapped[str | None] = mapped_column(ForeignKey("aap_instances.id"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # every AAP request
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # set when replaced


class AapRequest(Base):
    """What came in through the door for one deferral, and the approval's consumption."""

    __tablename__ = "aap_requests"

    deferral_id: Mapped[str] = mapped_column(ForeignKey("deferrals.id"), primary_key=True)
    instance_id: Mapped[str | None] = mapped_column(ForeignKey("aap_instances.id"))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    # The JSON object exactly as the client sent it: the resource echoes these bytes.
    submission: Mapped[str] = mapped_column(Text)
    # SHA-256 of its RFC 8785 form: the same fields whatever the spacing or key order.
    submission_hash: Mapped[str] = mapped_column(String(64))
    # The digest of the submitted {tool, args}: an approval of anything else is no approval.
    action_digest: Mapped[str] = mapped_column(String(71))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set once, by `consume`'s conditional UPDATE: the approval's one run has begun.
    consumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    consume_key: Mapped[str | None] = mapped_column(String(255))
