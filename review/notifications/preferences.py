"""A person's notification choices: which personal channels, a daily digest, quiet hours.

Quiet hours are a window of the day in the person's time zone ("22:00" to "07:00" spans
midnight); a message planned inside it waits for its end (its first attempt is then),
and a message about a deferral decided meanwhile is never sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from sqlalchemy import select
from sqlalchemy.orm import Session

from review.audit.chain import record_event
from review.errors import DomainError
from review.models import User
from review.notifications.models import NotificationPreference
from review.notifications.registry import personal_names

HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class Preferences:
    channels: tuple[str, ...]
    digest: bool = False
    quiet_from: str | None = None
    quiet_until: str | None = None
    timezone: str = "UTC"

    def wants(self, channel: str) -> bool:
        return channel in self.channels

    def quiet_ends(self, now: datetime) -> datetime | None:
        """When the quiet hours `now` falls in end (UTC), or None when it is not quiet."""
        if not (self.quiet_from and self.quiet_until) or self.quiet_from == self.quiet_until:
            return None
        zone = ZoneInfo(self.timezone)
        local = now.astimezone(zone)
        start, end = _at(self.quiet_from), _at(self.quiet_until)
        today = local.time().replace(second=0, microsecond=0)
        if start < end:  # within one day
            inside = start <= today < end
            end_day = local.date()
        else:  # across midnight
            inside = today >= start or today < end
            end_day = local.date() + timedelta(days=1) if today >= start else local.date()
        if not inside:
            return None
        ends = datetime.combine(end_day, end, tzinfo=zone)
        return ends.astimezone(UTC)


def defaults() -> Preferences:
    return Preferences(channels=personal_names())


def _at(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def _from_row(row: NotificationPreference | None) -> Preferences:
    if row is None:
        return defaults()
    return Preferences(
        channels=tuple(row.channels or ()),
        digest=bool(row.digest),
        quiet_from=row.quiet_from,
        quiet_until=row.quiet_until,
        timezone=row.timezone or "UTC",
    )


def preferences_of(session: Session, user_id: int) -> Preferences:
    return _from_row(session.get(NotificationPreference, user_id))


def preferences_for(session: Session, user_ids: Iterable[int]) -> dict[int, Preferences]:
    """Each person's preferences (the defaults for those who chose nothing)."""
    ids = list(set(user_ids))
    rows = {}
    if ids:
        rows = {
            r.user_id: r
            for r in session.scalars(
                select(NotificationPreference).where(NotificationPreference.user_id.in_(ids))
            )
        }
    return {user_id: _from_row(rows.get(user_id)) for user_id in ids}


class BadPreferences(DomainError):
    """A choice on the settings page that cannot be kept (the message says which)."""


def save_preferences(
    session: Session,
    user_id: int,
    *,
    channels: Iterable[str],
    digest: bool,
    quiet_from: str | None,
    quiet_until: str | None,
    timezone: str,
) -> Preferences:
    """Validate and store a person's choices (BadPreferences, nothing stored, if wrong)."""
    chosen = tuple(sorted(set(channels)))
    unknown = [c for c in chosen if c not in personal_names()]
    if unknown:
        raise BadPreferences(f"no such channel: {', '.join(unknown)}")
    quiet_from, quiet_until = (
        (quiet_from or "").strip() or None,
        (quiet_until or "").strip() or None,
    )
    if bool(quiet_from) != bool(quiet_until):
        raise BadPreferences("quiet hours need both a start and an end (or neither)")
    for value in (quiet_from, quiet_until):
        if value is not None and not HHMM.match(value):
            raise BadPreferences(f"quiet hours are HH:MM (24 h), got {value[:20]!r}")
    timezone = (timezone or "UTC").strip() or "UTC"
    try:
        if timezone not in available_timezones() and timezone != "UTC":
            raise ZoneInfoNotFoundError(timezone)
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadPreferences(f"unknown time zone {timezone[:64]!r} (e.g. Europe/Berlin)") from None
    row = session.get(NotificationPreference, user_id)
    if row is None:
        row = NotificationPreference(user_id=user_id)
        session.add(row)
    row.channels = list(chosen)
    row.digest = digest
    row.quiet_from, row.quiet_until, row.timezone = quiet_from, quiet_until, timezone
    saved = _from_row(row)
    username = session.scalar(select(User.username).where(User.id == user_id))
    record_event(
        session,
        actor_kind="user",
        actor_id=username or str(user_id),
        event_type="user.settings_changed",
        payload={
            "username": username,
            "notifications": {
                "channels": list(saved.channels),
                "digest": saved.digest,
                "quiet_hours": [saved.quiet_from, saved.quiet_until, saved.timezone]
                if saved.quiet_from
                else None,
            },
        },
    )
    return saved
