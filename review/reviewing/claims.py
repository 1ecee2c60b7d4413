"""Batches: a reviewer claims a few of the most urgent deferrals under a lease.

A claim is one conditional UPDATE of rows picked in the same transaction: on
PostgreSQL the pick is `FOR UPDATE SKIP LOCKED`, so concurrent reviewers take
different rows without waiting; on SQLite the IMMEDIATE transaction serialises the
claims. Either way a deferral is held by one reviewer at a time. A lease lapses after
COUNTERSIGN_LEASE_SECONDS without activity; lapsed claims go back to the queue the
next time anyone claims (review/reviewing/lapsed_claims.py), and any action in the batch
renews the lease. Start batch's pick and claim is one statement
(review/reviewing/batch_pick.py).

What a reviewer may take (`_takeable`): pending, not asked on their own behalf, not one
they approved already (its next approval must come from someone else), and, when a
policy rule routed it to a reviewer group (PROTOCOL.md section 10), only if they are in
that group or an admin. Membership is read in the claim's own transaction. Set aside
(review/reviewing/set_aside.py): a deferral snoozed until T is in nobody's batch before
T, and only the reviewer who snoozed it (and admins) may claim it from its row or page;
one handed to a reviewer is theirs alone (and admins'), and comes first in their batch.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import (
    Update,
    case,
    cast,
    exists,
    func,
    literal_column,
    null,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.orm import Session

from review.audit.chain import chained_write, record_events
from review.errors import InvalidState
from review.groups import GroupMember
from review.identity import identity_keys
from review.intake.policy import LEVELS
from review.models import Approval, Deferral, PendingDecision, User, utcnow
from review.reviewing.batch_pick import (
    HOLDER_ID,
    IDENTITY_KEYS,
    NOW,
    USERNAME,
    claim_most_urgent,
    claim_params,
    claim_statement,
)
from review.reviewing.claim_barriers import claim_barrier
from review.reviewing.lapsed_claims import (
    agent_slugs,
    lapsed_where,
    return_lapsed_claims,
    return_lapsed_first,
)
from review.reviewing.live import note_changed
from review.services import Services


@dataclass(frozen=True)
class Holder:
    """The reviewer a batch belongs to (kept free of Flask: the views pass it in)."""

    id: int
    username: str
    identities: frozenset[str]  # username and e-mail: who they are as a principal

    @functools.cached_property
    def identity_keys(self) -> frozenset[str]:
        """Their identities as separation of duties compares them (review/identity.py)."""
        return identity_keys(self.identities)


def two_person_levels(level_setting: str) -> tuple[str, ...]:
    """The risk levels that need two approvers, from COUNTERSIGN_TWO_PERSON_LEVEL."""
    if level_setting == "none":
        return ()
    return LEVELS[LEVELS.index(level_setting) :]


def _event(d_id: str, agent: str, holder: Holder, kind: str, now: datetime, **payload) -> dict:
    return {
        "actor_kind": "user",
        "actor_id": holder.username,
        "event_type": kind,
        "agent": agent,
        "deferral_id": d_id,
        "payload": payload,
        "at": now,
    }


def held_ids(session: Session, holder: Holder, now: datetime) -> list[str]:
    return [r.id for r in _held(session, holder, now)]


def _held(session: Session, holder: Holder, now: datetime) -> list:
    """What they hold, in batch order: what was handed to them first
    (review/reviewing/set_aside.py), then by rank (`_batch_order` sorts the same way)."""
    return list(
        session.execute(
            select(Deferral.id, Deferral.handed_to, Deferral.rank)
            .where(
                Deferral.claimed_by == holder.id,
                Deferral.status == "in_review",
                Deferral.lease_expires_at >= now,
            )
            .order_by(case((Deferral.handed_to == holder.username, 1), else_=0).desc())
            .order_by(Deferral.rank.desc())
        )
    )


def _held_and_lapsed(session: Session, holder: Holder, now: datetime) -> tuple[list, bool]:
    """What they hold (as `_held` reads it, in no order) and whether any claim has
    lapsed, anyone's, in one statement: Start batch's first, under the chain's locks.

    Start batch looked for lapsed claims in a read of its own before its write (a
    transaction, on PostgreSQL four round trips), so that its write would not carry the
    search; the search is one index probe (ix_deferrals_status_lease), here a part of a
    statement the write makes anyway. The lapsed are returned in the same write, only
    when there are some (review/reviewing/lapsed_claims.py)."""
    rows = session.execute(_HELD_AND_LAPSED, {"holder_id": holder.id, "now": now}).all()
    return [r for r in rows if not r.lapsed], any(r.lapsed for r in rows)


def _held_and_lapsed_statement():
    table = Deferral.__table__
    held = select(
        table.c.id, table.c.handed_to, table.c.rank, literal_column("0").label("lapsed")
    ).where(
        table.c.claimed_by == HOLDER_ID,
        table.c.status == "in_review",
        table.c.lease_expires_at >= NOW,
    )
    one_lapsed = (
        select(
            table.c.id,
            # Typed: PostgreSQL reads an untyped NULL of a subquery as text.
            cast(null(), table.c.handed_to.type).label("handed_to"),
            cast(null(), table.c.rank.type).label("rank"),
            literal_column("1").label("lapsed"),
        )
        .where(*lapsed_where(table, NOW))
        .limit(1)
    )
    return union_all(held, one_lapsed.subquery().select())


_HELD_AND_LAPSED = _held_and_lapsed_statement()


def _batch_order(holder: Holder, rows) -> list[str]:
    """Ids in held_ids' order, from rows carrying id, handed_to and rank."""
    ordered = sorted(rows, key=lambda r: (r.handed_to == holder.username, r.rank), reverse=True)
    return [r.id for r in ordered]


@dataclass(frozen=True)
class Standing:
    """What the reviewer is, as claims ask it: admin or not, and their groups."""

    admin: bool
    groups: tuple[str, ...]


def standing(session: Session, holder: Holder) -> Standing:
    """Role and groups in one statement (a claim asks both, in its own transaction)."""
    rows = session.execute(
        select(User.role, GroupMember.group_name)
        .outerjoin(GroupMember, GroupMember.username == User.username)
        .where(User.id == holder.id)
        .order_by(GroupMember.group_name)
    ).all()
    role = rows[0].role if rows else None
    return Standing(role == "admin", tuple(r.group_name for r in rows if r.group_name))


def _pending_and_not_theirs(table, identity_keys, username) -> list:
    """Pending, not asked on their own behalf, not one they approved already (the
    reviewer's identity keys and username: values, or Start batch's bound parameters)."""
    return [
        table.c.status == "pending",
        table.c.principal_key.not_in(identity_keys),
        ~exists().where(Approval.deferral_id == table.c.id, Approval.username == username),
    ]


def _batch_takeable(table) -> list:
    """What Start batch may take (see the module doc): nothing snoozed, even for an
    admin; a routed deferral only for a member of its group or an admin, which the
    statement reads itself (users, group_members: in the claim's transaction, as
    `standing` would, without a statement of its own). Nothing handed to someone else:
    the pick's own two parts say that (handed to them, or to nobody: batch_pick.py).
    The reviewer and the time are bound parameters (batch_pick.claim_params)."""
    admin = exists().where(User.id == HOLDER_ID, User.role == "admin")
    groups = (
        select(GroupMember.group_name)
        .join(User, User.username == GroupMember.username)
        .where(User.id == HOLDER_ID)
    )
    return [
        *_pending_and_not_theirs(table, IDENTITY_KEYS, USERNAME),
        _awake(table, NOW),
        or_(table.c.route_group.is_(None), admin, table.c.route_group.in_(groups)),
    ]


@functools.cache
def _unfiltered_claim() -> Update:
    """Start batch's claim without the queue's filters, built once (batch_pick.py)."""
    return claim_statement(_batch_takeable(Deferral.__table__))


def _awake(table, now: datetime):
    return or_(table.c.not_before.is_(None), table.c.not_before <= now)


def _for_them(table, holder: Holder):
    return or_(table.c.handed_to.is_(None), table.c.handed_to == holder.username)


def _takeable(table, holder: Holder, who: Standing, now: datetime) -> list:
    """What a reviewer may claim one at a time (see the module doc): an admin anything
    pending and not theirs; others nothing snoozed by someone else, handed to someone
    else or routed to a group they are not in. (Start batch: `_batch_takeable`.)"""
    conditions = _pending_and_not_theirs(table, sorted(holder.identity_keys), holder.username)
    if not who.admin:
        snoozed_by_me = Deferral.set_aside["by"].as_string() == holder.username
        conditions += [
            or_(_awake(table, now), snoozed_by_me),
            _for_them(table, holder),
            or_(table.c.route_group.is_(None), table.c.route_group.in_(who.groups)),
        ]
    return conditions


@dataclass(frozen=True)
class Batch:
    """A reviewer's batch as a claim left it."""

    ids: list[str]  # in batch order (held_ids')
    kept: list[str]  # those they held already; the others were pending until this claim


def claim_batch(
    svc: Services, holder: Holder, now: datetime | None = None, where: Sequence = ()
) -> list[str]:
    """Claim up to COUNTERSIGN_BATCH_SIZE of the most urgent deferrals this reviewer may
    take: the batch's ids (`take_batch`)."""
    return take_batch(svc, holder, now, where).ids


def take_batch(
    svc: Services, holder: Holder, now: datetime | None = None, where: Sequence = ()
) -> Batch:
    """Claim up to COUNTERSIGN_BATCH_SIZE of the most urgent deferrals this reviewer may take.

    `where`: more conditions on the deferrals (the queue's filters: level, agent, label).
    A reviewer who still holds a batch keeps it, topped up to the batch size.
    """
    now = now or utcnow()
    size = svc.settings.batch_size
    lease_until = now + timedelta(seconds=svc.settings.lease_seconds)
    table = Deferral.__table__
    with chained_write(svc.db) as session:
        held, lapsed = _held_and_lapsed(session, holder, now)
        if lapsed:  # anyone's: back to the queue first, where this pick may take them
            return_lapsed_claims(session, now)
        wanted = size - len(held)
        taken = []
        if wanted > 0:
            claim = (
                claim_statement([*_batch_takeable(table), *where]) if where else _unfiltered_claim()
            )
            params = claim_params(holder, now, lease_until, wanted)
            taken = claim_most_urgent(session, holder, claim, params)
            if taken:  # their events in batch order
                _record_claims(session, taken, holder, now, lease_until)
        if held:
            session.execute(
                update(table)
                .where(table.c.id.in_([r.id for r in held]), table.c.claimed_by == holder.id)
                .values(lease_expires_at=lease_until)
            )
        # What they held (its lease renewed above) and what they took: no second read.
        return Batch(_batch_order(holder, [*held, *taken]), [r.id for r in held])


def _claim(session: Session, rows, holder: Holder, now: datetime, lease_until: datetime) -> list:
    """Take `rows` (picked FOR UPDATE in this transaction), each with its audit event;
    the rows taken. (A row may carry its agent's slug as `agent_slug`, saving a read.)"""
    if not rows:
        return []
    table = Deferral.__table__
    # Conditional, and RETURNING says which it took: only those get a claim event.
    taken = set(
        session.scalars(
            update(table)
            .where(table.c.id.in_([r.id for r in rows]), table.c.status == "pending")
            .values(
                status="in_review",
                claimed_by=holder.id,
                claimed_at=now,
                lease_expires_at=lease_until,
            )
            .returning(table.c.id)
        )
    )
    rows = [r for r in rows if r.id in taken]
    if not rows:
        return []
    _record_claims(session, rows, holder, now, lease_until)
    return list(rows)


def _record_claims(session: Session, rows, holder: Holder, now: datetime, lease_until) -> None:
    """Each claimed row's audit event (and the live pages told, after the commit)."""
    note_changed(session, *[r.id for r in rows])
    if all(hasattr(r, "agent_slug") for r in rows):
        slugs = {r.agent_id: r.agent_slug for r in rows}
    else:
        slugs = agent_slugs(session, {r.agent_id for r in rows})
    record_events(
        session,
        [
            _event(
                r.id,
                slugs[r.agent_id],
                holder,
                "deferral.claimed",
                now,
                lease_expires_at=lease_until.isoformat(),
            )
            for r in rows
        ],
    )


class NotTakeable(InvalidState):
    """The reviewer cannot claim this deferral; the message says why."""


def claim_one(svc: Services, holder: Holder, deferral_id: str, now: datetime | None = None) -> None:
    """Claim one pending deferral chosen from the queue or its own page (added to the
    reviewer's batch, which keeps its lease); NotTakeable says why not."""
    now = now or utcnow()
    lease_until = now + timedelta(seconds=svc.settings.lease_seconds)
    table = Deferral.__table__
    return_lapsed_first(svc, now)
    with chained_write(svc.db) as session:
        who = standing(session, holder)
        row = session.execute(
            select(table.c.id, table.c.agent_id)
            .where(table.c.id == deferral_id, *_takeable(table, holder, who, now))
            .with_for_update(skip_locked=True)
        ).first()
        if row is None:
            raise NotTakeable(_why_not(session, holder, who, deferral_id, now))
        _claim(session, [row], holder, now, lease_until)
        session.execute(
            update(table)
            .where(table.c.claimed_by == holder.id, table.c.status == "in_review")
            .values(lease_expires_at=lease_until)
        )


def _why_not(
    session: Session, holder: Holder, who: Standing, deferral_id: str, now: datetime
) -> str:
    d = session.get(Deferral, deferral_id)
    if d is None:
        return "There is no such deferral."
    if d.status == "in_review":
        if d.claimed_by == holder.id:
            return "You hold it already."
        return "Another reviewer holds it right now."
    if d.status != "pending":
        return f"It is already {d.status}."
    given = [a.username for a in d.approvals]
    if holder.username in given:
        n = given.index(holder.username) + 1
        return (
            f"You gave it approval {n} of {d.required_approvals}: "
            "the next must come from another reviewer."
        )
    barrier = claim_barrier(d, holder, who, now, approved_by_me=False)
    if barrier is not None:
        return barrier.sentence
    return "It changed while you claimed it: look again."


def withheld_note(svc: Services, holder: Holder) -> str:
    """Why pending items are not offered to this reviewer, for an empty Start batch:
    " (N pending items are routed to groups you are not in: a, b)", or ""."""
    table = Deferral.__table__
    with svc.db.read() as session:
        who = standing(session, holder)
        if who.admin:
            return ""
        rows = session.execute(
            select(table.c.route_group, func.count())
            .where(
                table.c.status == "pending",
                table.c.route_group.is_not(None),
                table.c.route_group.not_in(who.groups),
            )
            .group_by(table.c.route_group)
            .order_by(table.c.route_group)
        ).all()
    if not rows:
        return ""
    count = sum(n for _, n in rows)
    items = "item is" if count == 1 else "items are"
    groups = ", ".join(g for g, _ in rows)
    return f" ({count} pending {items} routed to groups you are not in: {groups})"


def release_batch(svc: Services, holder: Holder, now: datetime | None = None) -> int:
    """Give every held deferral back to the queue, but one with a decision held for its
    undo window: that decision takes effect on the claim (review/reviewing/undo.py), as a
    lapsed lease leaves it too (lapsed_claims.py), so no pending deferral carries one."""
    now = now or utcnow()
    table = Deferral.__table__
    with chained_write(svc.db) as session:
        released = session.execute(
            update(table)
            .where(
                table.c.claimed_by == holder.id,
                table.c.status == "in_review",
                ~exists().where(_pending_decisions.c.deferral_id == table.c.id),
            )
            .values(status="pending", claimed_by=None, claimed_at=None, lease_expires_at=None)
            .returning(table.c.id, table.c.agent_id)
        ).all()
        if not released:
            return 0
        note_changed(session, *[r.id for r in released])
        slugs = agent_slugs(session, {r.agent_id for r in released})
        record_events(
            session,
            [_event(r.id, slugs[r.agent_id], holder, "deferral.released", now) for r in released],
        )
        return len(released)


_pending_decisions = PendingDecision.__table__
