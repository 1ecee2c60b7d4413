"""Notification deliveries as admins see them (/admin/notifications): the newest, the
dead letters, the counts per channel and status."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from review.models import User
from review.notifications.models import Notification, NotificationItem

PAGE_SIZE = 100
FILTERS = {"all": None, "dead": "dead", "pending": "pending", "delivered": "delivered"}


@dataclass(frozen=True)
class Delivery:
    id: str
    kind: str
    channel: str
    tier: int
    to: str  # "rita <rita@example.com>", or "shared" for Slack's channel and the webhook
    deferral_ids: list[str]
    status: str
    attempts: int
    next_attempt_at: datetime | None  # when pending
    last_error: str | None
    provider_ref: str | None
    created_at: datetime
    finished_at: datetime | None


def recent(
    session: Session, *, status: str | None = None, limit: int = PAGE_SIZE
) -> list[Delivery]:
    """The newest deliveries (only those of one status, if asked)."""
    query = select(Notification, User.username).outerjoin(User, User.id == Notification.user_id)
    if status is not None:
        query = query.where(Notification.status == status)
    found = session.execute(query.order_by(Notification.created_at.desc()).limit(limit)).all()
    items: dict[str, list[str]] = {row.id: [] for row, _ in found}
    if items:
        for notification_id, deferral_id in session.execute(
            select(NotificationItem.notification_id, NotificationItem.deferral_id).where(
                NotificationItem.notification_id.in_(list(items))
            )
        ):
            items[notification_id].append(deferral_id)
    return [
        Delivery(
            id=row.id,
            kind=row.kind,
            channel=row.channel,
            tier=row.tier,
            to=f"{username} <{row.address}>" if username else "shared",
            deferral_ids=sorted(items[row.id]),
            status=row.status,
            attempts=row.attempts,
            next_attempt_at=row.next_attempt_at if row.status == "pending" else None,
            last_error=row.last_error,
            provider_ref=row.provider_ref,
            created_at=row.created_at,
            finished_at=row.finished_at,
        )
        for row, username in found
    ]


def counts(session: Session) -> dict[str, dict[str, int]]:
    """channel -> status -> how many (served by ix_notifications_status_next for the
    pending and dead ones; delivered rows are counted too, which grow: see docs)."""
    table: dict[str, dict[str, int]] = {}
    for channel, status, n in session.execute(
        select(Notification.channel, Notification.status, func.count()).group_by(
            Notification.channel, Notification.status
        )
    ):
        table.setdefault(channel, {})[status] = n
    return table
