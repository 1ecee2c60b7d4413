"""Why a reviewer may not claim a pending deferral, said before they try.

The queue's rows and the item's page offer **Claim** only to reviewers who may take
the item; to the others they say why not (routed to a group they are not in, handed to
someone else, snoozed, asked on their own behalf, approved by them already). The rules
are claims.py's `_takeable` (the server's refusal, which stays: this is what the page
shows, the conditional claim is what decides), read here from one row in Python.
`claims._why_not` words a refusal with the same `Barrier.sentence`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from review.models import Approval

if TYPE_CHECKING:
    from review.reviewing.claims import Holder, Standing


@dataclass(frozen=True)
class Barrier:
    """Why not, twice: `short` for a queue row, `sentence` for the item page and a refusal."""

    short: str
    sentence: str


def claim_barrier(
    item: Any, holder: Holder, who: Standing, now: datetime, *, approved_by_me: bool
) -> Barrier | None:
    """Why `holder` may not claim the pending `item` (a Deferral, or a queue row with
    its principal_key, handed_to, not_before, set_aside, route_group and
    required_approvals); None when they may."""
    if item.principal_key and item.principal_key in holder.identity_keys:
        return Barrier(
            "Made on your behalf: another reviewer decides it",
            "It was made on your own behalf: another reviewer must decide it.",
        )
    if approved_by_me:
        return Barrier(
            "You approved it: the next approval is another reviewer's",
            f"You gave it an approval of the {item.required_approvals} it needs: "
            "the next must come from another reviewer.",
        )
    if who.admin:
        return None
    if item.handed_to is not None and item.handed_to != holder.username:
        return Barrier(
            f"Handed to {item.handed_to}",
            f"It was handed to {item.handed_to}: only they (and admins) may claim it.",
        )
    snoozed_by = (item.set_aside or {}).get("by", "a reviewer")
    if item.not_before is not None and item.not_before > now and snoozed_by != holder.username:
        until = item.not_before.strftime("%Y-%m-%d %H:%M UTC")
        return Barrier(
            f"Snoozed by {snoozed_by} until {item.not_before.strftime('%H:%M UTC')}",
            f"{snoozed_by} snoozed it until {until}: it comes back to the queue then.",
        )
    if item.route_group is not None and item.route_group not in who.groups:
        return Barrier(
            f"Routed to group {item.route_group}: you are not a member",
            f"It is routed to the reviewer group {item.route_group}: only its members "
            "(and admins) may claim it.",
        )
    return None


def approved_by(session: Session, username: str, ids: list[str]) -> set[str]:
    """Which of these deferrals `username` has approved already (one query)."""
    if not ids:
        return set()
    return set(
        session.scalars(
            select(Approval.deferral_id).where(
                Approval.deferral_id.in_(ids), Approval.username == username
            )
        )
    )


def barriers_for(
    session: Session, items: list[Any], holder: Holder, who: Standing, now: datetime
) -> dict[str, Barrier]:
    """The barrier of each item `holder` may not claim, by id (the others are absent)."""
    mine = approved_by(session, holder.username, [i.id for i in items])
    out = {}
    for item in items:
        barrier = claim_barrier(item, holder, who, now, approved_by_me=item.id in mine)
        if barrier is not None:
            out[item.id] = barrier
    return out
