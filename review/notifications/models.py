"""The notification tables (migration 0020): the outbox of messages, what each is about,
which stages of a deferral have been told, people's preferences, the webhook's secret.

A message row is written in the transaction of the change that causes it (a kill switch
flip, a decision), or by the planner in the transaction that marks a deferral's stage as
told (review/notifications/planning.py); the worker only moves rows from here to the
channels (review/notifications/delivery.py), so an outage delays a message, never loses it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, synonym

from review.models import Base, JSONType, UTCDateTime, utcnow

STATUSES = ("pending", "delivered", "dead", "skipped")


class Notification(Base):
    """One message to one place: a person's address (e-mail), or a shared one (Slack's
    channel, the webhook). Its id is the same on every attempt (the webhook's
    `webhook-id`, the e-mail's Message-ID), so receivers can deduplicate."""

    __tablename__ = "notifications"
    __table_args__ = (
        # The sender: WHERE status = 'pending' AND next_attempt_at <= now ORDER BY next_attempt_at.
        Index("ix_notifications_status_next", "status", "next_attempt_at"),
        # The admin page: newest first (and its dead letters: WHERE status = 'dead').
        Index("ix_notifications_created", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    # deferral.waiting, deferral.escalated, deferral.expiring, deferral.decided, digest,
    # agent.killed, agent.revived (review/notifications/kinds.py)
    kind: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(32))
    # 0: the first audience (the routed group, or every reviewer); 1: admins.
    tier: Mapped[int] = mapped_column(Integer, default=0)
    # A person's message: whom, and where it went (the address when it was planned).
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    address: Mapped[str | None] = mapped_column(String(320))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    # What the message says beyond its deferrals (an agent flip: reason, who; a digest: counts).
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    # What the provider calls the message once sent: Slack's "channel:ts" (chat.update needs
    # it), the e-mail's Message-ID, the webhook's HTTP status.
    provider_ref: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class NotificationItem(Base):
    """A deferral a message is about (one, or several in a batch)."""

    __tablename__ = "notification_items"
    __table_args__ = (
        # A deferral's messages: its follow-ups, time to decision, the earlier Slack posts.
        Index("ix_notification_items_deferral", "deferral_id"),
    )

    notification_id: Mapped[str] = mapped_column(
        ForeignKey("notifications.id", ondelete="CASCADE"), primary_key=True
    )
    deferral_id: Mapped[str] = mapped_column(String(40), primary_key=True)


class NotificationMark(Base):
    """A stage told once: ("dfr_...", "waiting"), ("dfr_...", "tier1"), ("dfr_...",
    "expiring"), ("digest:<user id>:<date>", "digest"). The planner inserts the mark and the
    messages in one transaction; the primary key refuses a second, so two sweeps (or two
    workers) never tell the same stage twice."""

    __tablename__ = "notification_marks"

    subject: Mapped[str] = mapped_column(String(64), primary_key=True)
    stage: Mapped[str] = mapped_column(String(32), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class NotificationPreference(Base):
    """A person's choices (the settings page). No row: every personal channel, no digest,
    no quiet hours."""

    __tablename__ = "notification_preferences"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    # The personal channels they want immediate messages on (["email"]); [] for none.
    channels: Mapped[list[str]] = mapped_column(JSONType, default=list)
    digest: Mapped[bool] = mapped_column(Boolean, default=False)
    # "HH:MM" in `timezone`; both or neither. Messages planned inside wait for the end.
    quiet_from: Mapped[str | None] = mapped_column(String(5))
    quiet_until: Mapped[str | None] = mapped_column(String(5))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")


class ServiceSecret(Base):
    """A secret of the service itself, sealed like agents' secrets (review/sealing.py):
    the notification webhook's signing secret (`notify secret`)."""

    __tablename__ = "service_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    id = synonym("name")  # `secrets reseal` reads every sealed table by `id`
    ciphertext: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
