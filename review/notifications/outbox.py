"""Notification rows, written in the caller's transaction (the outbox, as for callbacks).

A change that commits has its messages; one that rolls back has none. The worker only
moves rows from here to the channels (review/notifications/delivery.py), so a broken
SMTP server or a Slack outage delays a message and never loses it.

Written here, in the transaction of their cause:
- `add_agent_flip`: an agent's kill switch flipped, told to its owners (and to the shared
  channels that carry agent news);
- `add_decided`: deferrals ended; each channel that sent (or will send) something about
  one of them gets a `deferral.decided` message, if it carries that kind (the hook through
  which Slack updates its message), and the time from the first message to the decision
  is noted for the metrics.
New deferrals, escalations, reminders and digests are planned by the worker's sweep
(review/notifications/planning.py), which writes its rows with the marks that stop a
second sweep from writing them again.

Rows are written for every registered channel that carries the kind; a channel that is
not configured when the row's time comes skips it (status `skipped`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from review.ids import ulid
from review.models import Agent, Deferral, User
from review.notifications import kinds
from review.notifications.models import Notification, NotificationItem
from review.notifications.preferences import preferences_for
from review.notifications.registry import channels


def new_notification_id() -> str:
    return f"ntf_{ulid()}"


def note_send(session: Session) -> None:
    """Send right after the commit (the worker's tick is the safety net)."""
    session.info["notify"] = True


def add_message(
    session: Session,
    *,
    kind: str,
    channel: str,
    now: datetime,
    deferral_ids: Sequence[str] = (),
    tier: int = 0,
    user: User | None = None,
    address: str | None = None,
    agent_id: int | None = None,
    payload: dict[str, Any] | None = None,
    not_before: datetime | None = None,
) -> Notification:
    row = Notification(
        id=new_notification_id(),
        kind=kind,
        channel=channel,
        tier=tier,
        user_id=user.id if user is not None else None,
        address=address,
        agent_id=agent_id,
        payload=payload or {},
        status="pending",
        attempts=0,
        next_attempt_at=max(now, not_before) if not_before else now,
        created_at=now,
    )
    session.add(row)
    items = [{"notification_id": row.id, "deferral_id": d} for d in dict.fromkeys(deferral_ids)]
    if items:  # an ORM bulk insert: the session flushes the message row first
        session.execute(insert(NotificationItem), items)
    note_send(session)
    return row


def add_to_people(
    session: Session,
    people: Iterable[User],
    *,
    kind: str,
    now: datetime,
    deferral_ids: Sequence[str] = (),
    tier: int = 0,
    agent_id: int | None = None,
    payload: dict[str, Any] | None = None,
) -> list[Notification]:
    """One message per person per personal channel they chose and have an address for,
    after their quiet hours."""
    people = [p for p in people if p.is_active]
    prefs = preferences_for(session, [p.id for p in people])
    added = []
    for ch in channels():
        if not ch.personal or kind not in ch.kinds:
            continue
        for person in people:
            address = ch.address_of(person)
            if not address or not prefs[person.id].wants(ch.name):
                continue
            added.append(
                add_message(
                    session,
                    kind=kind,
                    channel=ch.name,
                    now=now,
                    deferral_ids=deferral_ids,
                    tier=tier,
                    user=person,
                    address=address,
                    agent_id=agent_id,
                    payload=payload,
                    not_before=prefs[person.id].quiet_ends(now),
                )
            )
    return added


def add_to_shared(
    session: Session,
    *,
    kind: str,
    now: datetime,
    deferral_ids: Sequence[str] = (),
    tier: int = 0,
    agent_id: int | None = None,
    payload: dict[str, Any] | None = None,
    only: Iterable[str] | None = None,
) -> list[Notification]:
    """One message per shared channel carrying the kind (or only those named)."""
    wanted = None if only is None else set(only)
    return [
        add_message(
            session,
            kind=kind,
            channel=ch.name,
            now=now,
            deferral_ids=deferral_ids,
            tier=tier,
            agent_id=agent_id,
            payload=payload,
        )
        for ch in channels()
        if not ch.personal and kind in ch.kinds and (wanted is None or ch.name in wanted)
    ]


def add_agent_flip(
    session: Session,
    agent: Agent,
    kind: str,
    *,
    reason: str,
    by: str,
    now: datetime,
    deferrals_ended: int = 0,
) -> list[Notification]:
    """`agent.killed` / `agent.revived`, to the agent's owners, in the flip's transaction."""
    payload = {
        "slug": agent.slug,
        "name": agent.name,
        "state": agent.state,
        "reason": reason,
        "by": by,
        "deferrals_ended": deferrals_ended,
    }
    return [
        *add_to_people(
            session, agent.owners, kind=kind, now=now, agent_id=agent.id, payload=payload
        ),
        *add_to_shared(session, kind=kind, now=now, agent_id=agent.id, payload=payload),
    ]


def add_decided(session: Session, deferrals: Sequence[Deferral], now: datetime) -> None:
    """In the transaction that ends them: follow-ups for the channels that told of them,
    and (after the commit) the time from each channel's first message to the decision."""
    if not deferrals:
        return
    by_id = {d.id: d for d in deferrals}
    told = session.execute(
        select(
            NotificationItem.deferral_id,
            Notification.channel,
            func.min(Notification.finished_at).filter(Notification.status == "delivered"),
            func.count().filter(Notification.status.in_(("pending", "delivered"))),
        )
        .join(Notification, Notification.id == NotificationItem.notification_id)
        .where(
            NotificationItem.deferral_id.in_(list(by_id)),
            Notification.kind != kinds.DECIDED,
        )
        .group_by(NotificationItem.deferral_id, Notification.channel)
    ).all()
    follow: dict[str, list[str]] = {}
    for deferral_id, channel, first_sent, live in told:
        if live:
            follow.setdefault(channel, []).append(deferral_id)
        if first_sent is not None:
            seconds = (now - first_sent).total_seconds()
            session.info.setdefault("notified_decided", []).append((channel, seconds))
    for channel, deferral_ids in follow.items():
        for deferral_id in deferral_ids:
            add_to_shared(
                session,
                kind=kinds.DECIDED,
                now=now,
                deferral_ids=[deferral_id],
                payload={"status": by_id[deferral_id].status},
                only=[channel],
            )
