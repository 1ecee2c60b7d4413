"""Who is told, when: the worker's sweep that plans messages from the database's state.

Each stage of a deferral is told once, marked in `notification_marks` in the transaction
that writes its messages (two sweeps, or two workers, never tell it twice):

- `waiting` (tier 0): a new undecided deferral at or above COUNTERSIGN_NOTIFY_LEVEL, to
  its routed group's members, or, when it has no group, every reviewer;
- `tier1`: still unclaimed (pending) COUNTERSIGN_ESCALATE_AFTER seconds after intake,
  to the next tier: the admins;
- `expiring`: undecided COUNTERSIGN_NOTIFY_REMIND_BEFORE seconds before it expires, to
  the tier-0 audience again;
- a daily digest, after COUNTERSIGN_NOTIFY_DIGEST_HOUR (UTC), for each reviewer or admin
  who asked for one, when something waits.

Personal channels (e-mail) get one message per person, per the person's preferences
(review/notifications/preferences.py: channels, quiet hours); shared channels (Slack,
the webhook) one message per deferral per tier. No storm: when one sweep finds
COUNTERSIGN_NOTIFY_BATCH_AT or more deferrals for one person (or one shared channel) at
one stage, one message lists them all.

The deferral row is the durable record of "this must be told": the sweep, not intake,
writes the messages, so intake's hot path (on PostgreSQL one server-side call) gains no
work, and a new deferral is told within a worker tick (5 s).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import String, and_, cast, exists, func, literal, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from review.groups import GroupMember
from review.intake.policy import LEVELS
from review.models import PENDING_STATUSES, Deferral, User, utcnow
from review.notifications import kinds
from review.notifications.models import NotificationMark, NotificationPreference
from review.notifications.outbox import add_message
from review.notifications.preferences import preferences_for
from review.notifications.registry import configured
from review.services import Services

SWEEP_LIMIT = 200  # deferrals per stage per sweep (the next sweep takes the rest)
DIGEST_ITEMS = 10
STAGES = {  # stage -> (kind, tier)
    "waiting": (kinds.WAITING, 0),
    "tier1": (kinds.ESCALATED, 1),
    "expiring": (kinds.EXPIRING, 0),
}


def levels_from(level: str) -> tuple[str, ...]:
    """The risk levels at or above `level` ("none": no level)."""
    return LEVELS[LEVELS.index(level) :] if level in LEVELS else ()


def plan_due(svc: Services, now: datetime | None = None) -> int:
    """Plan every stage that is due now; how many messages were written."""
    now = now or utcnow()
    settings = svc.settings
    levels = levels_from(settings.notify_level)
    if not configured(settings):
        return 0
    written = 0
    if levels:
        undecided = and_(Deferral.status.in_(PENDING_STATUSES), Deferral.risk_level.in_(levels))
        written += _plan_stage(svc, "waiting", undecided, now)
        written += _plan_stage(
            svc,
            "tier1",
            and_(
                Deferral.status == "pending",
                Deferral.risk_level.in_(levels),
                Deferral.created_at <= now - timedelta(seconds=settings.escalate_after),
            ),
            now,
        )
        if settings.notify_remind_before:
            written += _plan_stage(
                svc,
                "expiring",
                and_(
                    undecided,
                    Deferral.expires_at > now,
                    Deferral.expires_at <= now + timedelta(seconds=settings.notify_remind_before),
                ),
                now,
            )
    if now.hour >= settings.notify_digest_hour:
        written += _plan_digests(svc, now)
    return written


def _mark(session: Session, subject: str, stage: str, now: datetime) -> bool:
    """Mark the stage told; False when it was already (by this sweep or another)."""
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = (
        insert(NotificationMark)
        .values(subject=subject, stage=stage, at=now)
        .on_conflict_do_nothing(index_elements=["subject", "stage"])
        .returning(NotificationMark.subject)  # a row back: this call marked it
    )
    return session.execute(statement).scalar() is not None


def _plan_stage(svc: Services, stage: str, condition, now: datetime) -> int:
    """Tell the stage for the deferrals due for it. A read finds them first, so an idle
    tick never takes SQLite's write lock away from intake."""
    kind, tier = STAGES[stage]
    told = exists().where(NotificationMark.subject == Deferral.id, NotificationMark.stage == stage)
    query = select(Deferral.id).where(condition, ~told).order_by(Deferral.created_at)
    with svc.db.read() as session:
        candidates = session.scalars(query.limit(SWEEP_LIMIT)).all()
    if not candidates:
        return 0
    with svc.db.write() as session:
        due = session.scalars(
            select(Deferral)
            .where(Deferral.id.in_(candidates), condition)
            .order_by(Deferral.created_at)
        ).all()
        due = [d for d in due if _mark(session, d.id, stage, now)]
        if not due:
            return 0
        return _write(svc, session, due, kind, tier, now)


def group_of(deferral: Deferral) -> str | None:
    """The reviewer group the deferral is routed to (PROTOCOL.md section 10), if any."""
    return deferral.route_group


def audience(session: Session, deferral: Deferral, tier: int) -> list[User]:
    """Tier 0: the routed group's members, or every reviewer; tier 1: the admins."""
    query = select(User).where(User.is_active.is_(True))
    if tier >= 1:
        query = query.where(User.role == "admin")
    elif (group := group_of(deferral)) is not None:
        members = select(GroupMember.username).where(GroupMember.group_name == group)
        query = query.where(User.username.in_(members), User.role.in_(("reviewer", "admin")))
    else:
        query = query.where(User.role == "reviewer")
    return list(session.scalars(query.order_by(User.id)))


def _write(
    svc: Services, session: Session, due: Sequence[Deferral], kind: str, tier: int, now: datetime
) -> int:
    chans = [c for c in configured(svc.settings) if kind in c.kinds]
    personal = [c for c in chans if c.personal]
    people: dict[int, User] = {}
    buckets: dict[tuple[str, int | None], list[str]] = defaultdict(list)
    if personal:
        audiences: dict[str | None, list[User]] = {}  # one query per group, not per deferral
        for d in due:
            group = group_of(d) if tier == 0 else None
            if group not in audiences:
                audiences[group] = audience(session, d, tier)
            for person in audiences[group]:
                people[person.id] = person
                for ch in personal:
                    buckets[(ch.name, person.id)].append(d.id)
    for ch in chans:
        if not ch.personal:
            buckets[(ch.name, None)] = [d.id for d in due]
    prefs = preferences_for(session, list(people))
    by_name = {c.name: c for c in chans}
    written = 0
    for (name, user_id), ids in buckets.items():
        person = people.get(user_id) if user_id is not None else None
        address, not_before = None, None
        if person is not None:
            address = by_name[name].address_of(person)
            if not address or not prefs[person.id].wants(name):
                continue
            not_before = prefs[person.id].quiet_ends(now)
        groups = [ids] if len(ids) >= svc.settings.notify_batch_at else [[i] for i in ids]
        for group in groups:
            add_message(
                session,
                kind=kind,
                channel=name,
                now=now,
                deferral_ids=group,
                tier=tier,
                user=person,
                address=address,
                not_before=not_before,
            )
            written += 1
    return written


def _plan_digests(svc: Services, now: datetime) -> int:
    chans = [c for c in configured(svc.settings) if c.personal and kinds.DIGEST in c.kinds]
    if not chans:
        return 0
    day = now.date().isoformat()
    told_today = exists().where(
        NotificationMark.subject
        == literal("digest:", String) + cast(User.id, String) + literal(f":{day}", String),
        NotificationMark.stage == "digest",
    )
    with svc.db.read() as session:  # most ticks: everyone had today's already
        waiting = session.scalar(
            select(func.count())
            .select_from(User)
            .join(NotificationPreference, NotificationPreference.user_id == User.id)
            .where(NotificationPreference.digest.is_(True), User.is_active.is_(True), ~told_today)
        )
    if not waiting:
        return 0
    with svc.db.write() as session:
        people = session.scalars(
            select(User)
            .join(NotificationPreference, NotificationPreference.user_id == User.id)
            .where(
                NotificationPreference.digest.is_(True),
                User.is_active.is_(True),
                User.role.in_(("reviewer", "admin")),
            )
        ).all()
        if not people:
            return 0
        by_level = dict(
            session.execute(
                select(Deferral.risk_level, func.count())
                .where(Deferral.status.in_(PENDING_STATUSES))
                .group_by(Deferral.risk_level)
            ).all()
        )
        if not by_level:
            return 0
        oldest = session.scalars(
            select(Deferral.id)
            .where(Deferral.status.in_(PENDING_STATUSES))
            .order_by(Deferral.rank.desc())
            .limit(DIGEST_ITEMS)
        ).all()
        prefs = preferences_for(session, [p.id for p in people])
        written = 0
        for person in people:
            if prefs[person.id].quiet_ends(now):
                continue  # in quiet hours: a later sweep sends it
            if not _mark(session, f"digest:{person.id}:{day}", "digest", now):
                continue
            for ch in chans:
                address = ch.address_of(person)
                if not address:
                    continue
                add_message(
                    session,
                    kind=kinds.DIGEST,
                    channel=ch.name,
                    now=now,
                    deferral_ids=oldest,
                    user=person,
                    address=address,
                    payload={"by_level": by_level, "waiting": sum(by_level.values())},
                )
                written += 1
        return written
