"""Reading, not opening: how long a reviewer had an item in view before deciding it.

The reviewer's browser measures it (static/review.js: an IntersectionObserver adds up
the time a card is on screen while the tab is visible) and sends it with the decision,
so it costs no request of its own. The server cannot see the screen; what it can check
is that the figure is not more than the time since the claim (`claimed_at`), so a
forged or stale figure is cut down to that. Ticking a Select box is not reading.

An item counts as read after COUNTERSIGN_MIN_READ_SECONDS in view. Approving selected
items refuses unread ones; a single decision sooner is accepted and flagged ("fast") in
its audit event, with the time in view, for whoever reviews the reviewers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

MAX_REPORTED_MS = 24 * 3600 * 1000  # a figure above a day is nonsense: treated as a day


@dataclass(frozen=True)
class Reading:
    """Time in view of one item, as the browser reported it and as the server allows it."""

    reported_ms: int | None  # None: the browser sent nothing (no script, an old page)
    seconds: float  # what counts: the report, capped at the time since the claim
    read: bool  # in view for at least COUNTERSIGN_MIN_READ_SECONDS
    minimum: int  # that setting, when this was assessed

    def audit(self) -> dict[str, object]:
        """What a decision's audit event keeps of it."""
        return {
            "seconds_in_view": round(self.seconds, 1),
            "reported_ms": self.reported_ms,
            "read": self.read,
        }


def parse_ms(raw: str | None) -> int | None:
    """A time in view in milliseconds from a form field; None when absent or not a number."""
    if raw is None or not raw.strip().isdigit():
        return None
    return min(int(raw.strip()), MAX_REPORTED_MS)


def assess(
    reported_ms: int | None, claimed_at: datetime | None, now: datetime, min_seconds: int
) -> Reading:
    """The time in view that counts, and whether it makes the item read."""
    seconds = (reported_ms or 0) / 1000
    if claimed_at is not None:
        seconds = min(seconds, max((now - claimed_at).total_seconds(), 0.0))
    return Reading(reported_ms, seconds, seconds >= min_seconds, min_seconds)
