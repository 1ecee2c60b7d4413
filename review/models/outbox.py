"""Callbacks to deliver (the outbox) and each attempt to deliver them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from review.models.base import Base, UTCDateTime, utcnow


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
