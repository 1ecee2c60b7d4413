"""The registered agent runtimes, their owners and their signing secrets."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from review.models.base import Base, UTCDateTime, utcnow
from review.models.people import User


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
