"""Each reviewer's figures over a window: for whoever reviews the reviewers (admins).

- decisions: their approvals (final, or short of a quorum) and rejections of real items,
  from the decisions' audit events (`deferral.approved`, `deferral.rejected`,
  `deferral.approval_recorded`, and the older `deferral.approval_1_of_2`);
- approval rate: approvals among those decisions;
- median time in view: the `seconds_in_view` the events keep (review/reviewing/reading.py);
  events from before reading was measured have none and are left out of the median;
- flagged: decisions taken before the item counted as read (`fast` in the event);
- canaries: how many of the canaries they decided, and how many they caught
  (review/canaries/). Canary decisions are not counted as decisions: a known-bad item
  would pull the approval rate down for everyone who catches it.

Cost: a fixed number of statements whatever the number of reviewers, each served by an
index. The window's first event comes from `ix_audit_events_at` (one probe, ORDER BY
at LIMIT 1); the decisions are then `event_type IN (...) AND seq >= first`, a range on
`ix_audit_events_type_seq` per type, grouped by actor; the median is taken in SQL with
window functions (row_number and count per reviewer, the middle one or two rows), so
no event row travels to Python; the canaries come from `ix_canaries_decided_at`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Float, case, cast, func, or_, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from review.models import AuditEvent, Canary, User, utcnow

WINDOWS = (7, 30)
DECIDING_ROLES = ("admin", "reviewer")  # the roles that decide (review/web/auth.py DECIDERS)
APPROVALS = ("deferral.approved", "deferral.approval_recorded", "deferral.approval_1_of_2")
DECISIONS = (*APPROVALS, "deferral.rejected")


@dataclass
class ReviewerFigures:
    username: str
    role: str
    decisions: int = 0
    approvals: int = 0
    flagged: int = 0
    median_seconds: float | None = None
    canaries: int = 0
    caught: int = 0

    @property
    def approval_rate(self) -> float | None:
        return self.approvals / self.decisions if self.decisions else None

    @property
    def catch_rate(self) -> float | None:
        return self.caught / self.canaries if self.canaries else None


def _payload_fields(dialect: str):
    """The event payload's `seconds_in_view` (a number) and `fast` (a condition), in SQL."""
    if dialect == "sqlite":
        return (
            func.json_extract(AuditEvent.payload, "$.seconds_in_view"),
            func.json_extract(AuditEvent.payload, "$.fast") == 1,
        )
    payload = cast(AuditEvent.payload, JSONB)
    return cast(payload["seconds_in_view"].astext, Float), payload["fast"].astext == "true"


def _statements(dialect: str, first: int):
    seconds, fast = _payload_fields(dialect)
    decisions = (  # a range of ix_audit_events_type_seq per type
        AuditEvent.event_type.in_(DECISIONS),
        AuditEvent.seq >= first,
        AuditEvent.actor_kind == "user",
    )
    counts = (
        select(
            AuditEvent.actor_id,
            func.count(),
            func.sum(case((AuditEvent.event_type.in_(APPROVALS), 1), else_=0)),
            func.sum(case((fast, 1), else_=0)),
        )
        .where(*decisions)
        .group_by(AuditEvent.actor_id)
    )
    timed = select(AuditEvent.actor_id.label("actor"), seconds.label("s")).where(*decisions)
    timed = timed.subquery()
    by_actor = {"partition_by": timed.c.actor}
    ranked = (
        select(
            timed.c.actor,
            timed.c.s,
            func.row_number().over(**by_actor, order_by=timed.c.s).label("rn"),
            func.count().over(**by_actor).label("n"),
        )
        .where(timed.c.s.is_not(None))
        .subquery()
    )
    middle = or_(ranked.c.rn == (ranked.c.n + 1) // 2, ranked.c.rn == (ranked.c.n + 2) // 2)
    medians = select(ranked.c.actor, func.avg(ranked.c.s)).where(middle).group_by(ranked.c.actor)
    return counts, medians


def _first_seq(session: Session, since: datetime) -> int | None:
    """The window's first event (ix_audit_events_at); None: nothing happened since."""
    return session.scalar(
        select(AuditEvent.seq).where(AuditEvent.at >= since).order_by(AuditEvent.at).limit(1)
    )


def reviewer_figures(
    session: Session, days: int, now: datetime | None = None
) -> list[ReviewerFigures]:
    """Every reviewer's and admin's figures over the last `days` days, by username."""
    since = (now or utcnow()) - timedelta(days=days)
    people = {
        name: ReviewerFigures(name, role)
        for name, role in session.execute(
            select(User.username, User.role)
            .where(User.role.in_(DECIDING_ROLES))
            .order_by(User.username)
        )
    }
    first = _first_seq(session, since)
    if first is not None:
        counts, medians = _statements(session.get_bind().dialect.name, first)
        for name, n, approved, flagged in session.execute(counts):
            f = people.setdefault(name, ReviewerFigures(name, "?"))
            f.decisions, f.approvals, f.flagged = n, int(approved or 0), int(flagged or 0)
        for name, median in session.execute(medians):
            people.setdefault(name, ReviewerFigures(name, "?")).median_seconds = float(median)
    canaries = session.execute(
        select(
            Canary.decided_by,
            func.count(),
            func.sum(case((Canary.outcome == "caught", 1), else_=0)),
        )
        .where(Canary.decided_at >= since)  # ix_canaries_decided_at
        .group_by(Canary.decided_by)
    )
    for name, seen, caught in canaries:
        f = people.setdefault(name, ReviewerFigures(name, "?"))
        f.canaries, f.caught = seen, int(caught or 0)
    return list(people.values())
