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


def time_to_decision_by_reviewer(
    session: Session, *, since: datetime, until: datetime | None = None
) -> dict[str, dict[str, ChannelFigure]]:
    """reviewer -> channel -> figure, for every reviewer at once (one query; the same
    rules as time_to_decision_by_channel with `reviewer`): for a page with a row per
    reviewer."""
    first_sent = func.min(Notification.finished_at)
    query = (
        select(
            Deferral.id,
            Deferral.decided_at,
            Deferral.decided_by,
            Notification.channel,
            Notification.user_id,
            first_sent,
        )
        .join(NotificationItem, NotificationItem.deferral_id == Deferral.id)
        .join(Notification, Notification.id == NotificationItem.notification_id)
        .where(
            Deferral.status.in_(DECIDED_BY_PEOPLE),
            Deferral.decided_at >= since,
            Notification.status == "delivered",
        )
        .group_by(
            Deferral.id,
            Deferral.decided_at,
            Deferral.decided_by,
            Notification.channel,
            Notification.user_id,
        )
    )
    if until is not None:
        query = query.where(Deferral.decided_at < until)
    found = session.execute(query).all()
    names = {name for row in found for name in (row.decided_by or [])}
    ids = dict(
        session.execute(select(User.username, User.id).where(User.username.in_(names))).all()
    )
    first: dict[tuple[str, str, str], datetime] = {}  # (reviewer, deferral, channel) -> sent
    decided: dict[str, datetime] = {}
    for deferral_id, decided_at, decided_by, channel, user_id, sent in found:
        if sent is None or decided_at is None or sent > decided_at:
            continue
        decided[deferral_id] = decided_at
        for name in decided_by or []:
            if user_id is not None and user_id != ids.get(name):
                continue  # a personal message to someone else
            key = (name, deferral_id, channel)
            first[key] = min(first.get(key, sent), sent)
    seconds: dict[str, dict[str, list[float]]] = {}
    for (name, deferral_id, channel), sent in first.items():
        waited = (decided[deferral_id] - sent).total_seconds()
        seconds.setdefault(name, {}).setdefault(channel, []).append(waited)
    return {
        name: {
            channel: ChannelFigure(channel, len(values), statistics.median(values))
            for channel, values in sorted(by_channel.items())
        }
        for name, by_channel in sorted(seconds.items())
    }
