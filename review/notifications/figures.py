"""Time to decision per channel: from a channel's first message about a deferral to the
people's decision on it (for the per-reviewer figures page; the same figure is the
histogram countersign_notified_decision_seconds in /metrics).

`time_to_decision_by_channel(session, since=..., reviewer=...)` answers, per channel,
how many decisions followed a message on it and the median seconds between. With a
reviewer, only deferrals they decided count, and for personal channels (e-mail) only
the messages sent to them; a shared channel's message (Slack, the webhook) reaches
everyone, so its first one counts. Decisions taken before any message went out do not
count (they were not reached through the channel).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from review.models import Deferral, User
from review.notifications.models import Notification, NotificationItem

DECIDED_BY_PEOPLE = ("approved", "rejected")


@dataclass(frozen=True)
class ChannelFigure:
    channel: str
    decisions: int  # decisions that followed a message on this channel
    median_seconds: float | None  # from the channel's first message to the decision


def time_to_decision_by_channel(
    session: Session,
    *,
    since: datetime,
    until: datetime | None = None,
    reviewer: str | None = None,
) -> dict[str, ChannelFigure]:
    """Per channel (only those with decisions), the count and the median seconds."""
    first_sent = func.min(Notification.finished_at)
    query = (
        select(
            Deferral.id, Deferral.decided_at, Deferral.decided_by, Notification.channel, first_sent
        )
        .join(NotificationItem, NotificationItem.deferral_id == Deferral.id)
        .join(Notification, Notification.id == NotificationItem.notification_id)
        .where(
            Deferral.status.in_(DECIDED_BY_PEOPLE),
            Deferral.decided_at >= since,
            Notification.status == "delivered",
        )
        .group_by(Deferral.id, Deferral.decided_at, Deferral.decided_by, Notification.channel)
    )
    if until is not None:
        query = query.where(Deferral.decided_at < until)
    if reviewer is not None:
        mine = select(User.id).where(User.username == reviewer).scalar_subquery()
        query = query.where(or_(Notification.user_id.is_(None), Notification.user_id == mine))
    seconds: dict[str, list[float]] = {}
    for _id, decided_at, decided_by, channel, sent in session.execute(query):
        if reviewer is not None and reviewer not in (decided_by or []):
            continue
        if sent is None or decided_at is None or sent > decided_at:
            continue
        seconds.setdefault(channel, []).append((decided_at - sent).total_seconds())
    return {
        channel: ChannelFigure(channel, len(values), statistics.median(values))
        for channel, values in sorted(seconds.items())
    }
