"""Snooze and hand over (issue 16): the holder puts a deferral back in the queue, either
"not before T" with a reason, or for a named reviewer or a reviewer group.

- **Snooze**: the claim is released; until T, Start batch offers it to nobody and only
  the reviewer who snoozed it (and admins) may claim it from its row or page. T must
  fall before the deferral expires: snoozing past its expiry would be a silent denial.
- **Hand over to a reviewer**: the claim is released; only that reviewer (and admins)
  may claim it, and it comes first in their next batch, until they decide it or hand
  it on. They must be able to decide it: an active reviewer or admin, not the holder,
  not the person it was asked for, in its group when it is routed, and not one of its
  approvers already.
- **Hand over to a group**: re-routes it (`route_group`, PROTOCOL.md section 10): only
  that group's members (and admins) may claim it from now on.

Each is one transaction under the chain lock: the conditional UPDATE (the holder's
claim must still hold, under a live lease) and its audit event (`deferral.snoozed`,
`deferral.handed_over`). What was done shows on the card and the queue row from
`set_aside` ({"kind", "by", "reason", "at", and "until" or "to_user"/"to_group"}).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from review.audit.chain import chained_write, record_event
from review.groups import Group, groups_of
from review.identity import identity_keys
from review.models import Approval, Deferral, User, utcnow
from review.resources import rfc3339
from review.reviewing import undo
from review.reviewing.claims import Holder
from review.reviewing.decisions import MAX_REASON, Decided, DecisionRefused, held_for_decision
from review.reviewing.live import note_changed
from review.services import Services

SNOOZED = "deferral.snoozed"
HANDED_OVER = "deferral.handed_over"
MIN_SNOOZE = timedelta(minutes=1)


def snooze(
    svc: Services,
    holder: Holder,
    deferral_id: str,
    until: datetime,
    reason: str | None,
    now: datetime | None = None,
) -> Decided:
    """Put the held deferral back, not to be offered before `until`; DecisionRefused
    says why not."""
    now = now or utcnow()
    reason = _reason(reason, required=True)
    if until < now + MIN_SNOOZE:
        raise DecisionRefused("Snooze it until a time at least a minute from now.")
    with chained_write(svc.db) as session:
        held = held_for_decision(session, deferral_id, holder, now)
        if isinstance(held, Decided):
            return held
        _not_decided_yet(session, held)
        if until >= held.expires_at:
            raise DecisionRefused(
                f"It expires at {rfc3339(held.expires_at)}: snooze it until before then, "
                "or decide it now."
            )
        mark = {"kind": "snooze", "by": holder.username, "reason": reason, "at": rfc3339(now)}
        mark["until"] = rfc3339(until)
        _put_back(session, held, holder, now, not_before=until, handed_to=None, set_aside=mark)
        record_event(
            session,
            actor_kind="user",
            actor_id=holder.username,
            event_type=SNOOZED,
            agent=held.agent.slug,
            deferral_id=held.id,
            payload={"until": rfc3339(until), "reason": reason},
            at=now,
        )
        return Decided(held.id, "pending", f"Snoozed until {rfc3339(until)}.")


def hand_over(
    svc: Services,
    holder: Holder,
    deferral_id: str,
    *,
    to_user: str | None = None,
    to_group: str | None = None,
    note: str | None = None,
    now: datetime | None = None,
) -> Decided:
    """Hand the held deferral to a named reviewer or re-route it to a group."""
    now = now or utcnow()
    note = _reason(note, required=False)
    to_user = (to_user or "").strip() or None
    to_group = (to_group or "").strip() or None
    if (to_user is None) == (to_group is None):
        raise DecisionRefused("Hand it to one reviewer or to one group.")
    with chained_write(svc.db) as session:
        held = held_for_decision(session, deferral_id, holder, now)
        if isinstance(held, Decided):
            return held
        _not_decided_yet(session, held)
        mark: dict[str, Any] = {
            "kind": "hand_over",
            "by": holder.username,
            "reason": note,
            "at": rfc3339(now),
        }
        values: dict[str, Any] = {"not_before": None}
        if to_user is not None:
            _check_receiver(session, held, holder, to_user)
            mark["to_user"] = to_user
            values["handed_to"] = to_user
            done = f"Handed to {to_user}: only they (and admins) may claim it now."
        else:
            if session.get(Group, to_group) is None:
                raise DecisionRefused(f"There is no reviewer group {to_group!r}.")
            mark["to_group"] = to_group
            values.update(handed_to=None, route_group=to_group)
            done = f"Handed to the group {to_group}: only its members (and admins) may claim it."
        _put_back(session, held, holder, now, set_aside=mark, **values)
        record_event(
            session,
            actor_kind="user",
            actor_id=holder.username,
            event_type=HANDED_OVER,
            agent=held.agent.slug,
            deferral_id=held.id,
            payload={
                "to_user": to_user,
                "to_group": to_group,
                "previous_group": held.route_group,
                "note": note,
            },
            at=now,
        )
        return Decided(held.id, "pending", done)


def _not_decided_yet(session: Session, d: Deferral) -> None:
    """A decision waiting out its undo window (review/reviewing/undo.py) comes first."""
    if undo.held_decision(session, d.id) is not None:
        raise DecisionRefused(
            "Nothing changed: you decided it already. Undo it first to snooze or hand it over."
        )


def _reason(text: str | None, *, required: bool) -> str | None:
    text = (text or "").strip() or None
    if required and not text:
        raise DecisionRefused("Say why you snooze it: the next reviewer reads it.")
    if text and len(text) > MAX_REASON:
        raise DecisionRefused(f"Keep the reason under {MAX_REASON} characters.")
    return text


def _check_receiver(session: Session, d: Deferral, holder: Holder, username: str) -> None:
    """The named reviewer must be able to claim and approve it (see the module doc)."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None or not user.is_active or user.role not in ("admin", "reviewer"):
        raise DecisionRefused(f"There is no active reviewer {username!r}.")
    if user.id == holder.id:
        raise DecisionRefused("You hold it already: hand it to someone else.")
    if d.principal_key in identity_keys({username, *([user.email] if user.email else [])}):
        raise DecisionRefused(f"It was asked on {username}'s behalf: they may not decide it.")
    if d.route_group and user.role != "admin" and d.route_group not in groups_of(session, username):
        raise DecisionRefused(
            f"{username} is not in the reviewer group {d.route_group}: hand it to a member, "
            "or to another group."
        )
    approved = session.scalar(
        select(Approval.username).where(Approval.deferral_id == d.id, Approval.username == username)
    )
    if approved:
        raise DecisionRefused(f"{username} approved it already: the next approval is another's.")


def _put_back(session: Session, d: Deferral, holder: Holder, now: datetime, **values: Any) -> None:
    """The conditional UPDATE: the holder's claim must still hold."""
    table = Deferral.__table__
    done = session.execute(
        update(table)
        .where(
            table.c.id == d.id,
            table.c.status == "in_review",
            table.c.claimed_by == holder.id,
            table.c.lease_expires_at >= now,
        )
        .values(status="pending", claimed_by=None, claimed_at=None, lease_expires_at=None, **values)
    ).rowcount
    if done != 1:
        raise DecisionRefused("Nothing changed: someone else acted on it first.")
    note_changed(session, d.id)  # back in the queue (live pages)


def hand_over_choices(session: Session, holder: Holder) -> list[tuple[str, str]]:
    """Whom the card offers to hand an item to: ("user:NAME" | "group:NAME", label).
    hand_over checks the chosen one against the item itself."""
    people = session.scalars(
        select(User.username)
        .where(User.is_active, User.role.in_(("admin", "reviewer")), User.id != holder.id)
        .order_by(User.username)
    )
    groups = session.scalars(select(Group.name).order_by(Group.name))
    return [(f"user:{n}", n) for n in people] + [(f"group:{g}", f"group {g}") for g in groups]
