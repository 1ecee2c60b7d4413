"""Reviewer groups: who may claim the deferrals a policy rule routes to a group.

PROTOCOL.md section 10: a rule may name a group; only its members (and admins) may claim
what it routes there. Groups are made by the `groups` commands and the admin page, or
by single sign-on, which replaces a user's memberships with the groups its claim names
(`set_memberships`). Every change is audited in the transaction that makes it, and
takes the audit chain's lock first (review/audit/chain.py lock_chain): two racing
changes to the same group are serialised, so neither trips a unique constraint.

Functions that take a Session never commit; the caller's transaction holds them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, delete, insert, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from review.audit.chain import lock_chain, record_event
from review.errors import Conflict, DomainError, NotFound
from review.models import Base, User, UTCDateTime, utcnow

# Names an identity provider's groups claim may carry too: Keycloak's paths ("/finance"),
# Okta's names with spaces ("Platform Team"), Entra's GUIDs. No leading or trailing space.
GROUP_NAME = re.compile(r"^[A-Za-z0-9_/](?:[A-Za-z0-9_.@:/ -]{0,98}[A-Za-z0-9_.@:/-])?$")
GROUP_NAME_RULE = (
    "a group name is 1-100 letters, digits, spaces or _ . @ : / -, starting with a letter,"
    " digit, _ or / and not ending with a space"
)

Actor = tuple[str, str]
CLI: Actor = ("system", "cli")


class Group(Base):
    """A reviewer group (migration 0014)."""

    __tablename__ = "groups"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class GroupMember(Base):
    """One user in one group. (`group` is a reserved word in SQL, hence `group_name`.)"""

    __tablename__ = "group_members"
    __table_args__ = (
        # groups_of(username), which every claim of a routed deferral asks.
        Index("ix_group_members_username", "username"),
    )

    group_name: Mapped[str] = mapped_column(
        ForeignKey("groups.name", ondelete="CASCADE"), primary_key=True
    )
    username: Mapped[str] = mapped_column(
        ForeignKey("users.username", ondelete="CASCADE"), primary_key=True
    )


@dataclass(frozen=True)
class GroupListing:
    name: str
    created_at: datetime
    members: tuple[str, ...]


def check_group_name(name: str) -> str:
    if not isinstance(name, str) or not GROUP_NAME.match(name):
        raise DomainError(f"{name!r}: {GROUP_NAME_RULE}")
    return name


def create_group(session: Session, name: str, *, actor: Actor = CLI) -> None:
    """A new, empty group. Conflict when it exists."""
    check_group_name(name)
    lock_chain(session)
    if _exists(session, name):
        raise Conflict(f"group {name!r} already exists")
    _insert_group(session, name, actor)


def add_member(session: Session, name: str, username: str, *, actor: Actor = CLI) -> bool:
    """Put `username` in the group. False when they were in it already."""
    lock_chain(session)
    _require_group(session, name)
    _require_user(session, username)
    if name in groups_of(session, username):
        return False
    _insert_member(session, name, username, actor)
    return True


def remove_member(session: Session, name: str, username: str, *, actor: Actor = CLI) -> bool:
    """Take `username` out of the group. False when they were not in it."""
    lock_chain(session)
    _require_group(session, name)
    return _delete_member(session, name, username, actor)


def list_groups(session: Session) -> list[GroupListing]:
    """Every group with its members, by name."""
    members: dict[str, list[str]] = {}
    for group_name, username in session.execute(
        select(GroupMember.group_name, GroupMember.username).order_by(GroupMember.username)
    ):
        members.setdefault(group_name, []).append(username)
    return [
        GroupListing(group.name, group.created_at, tuple(members.get(group.name, ())))
        for group in session.scalars(select(Group).order_by(Group.name))
    ]


def groups_of(session: Session, username: str) -> list[str]:
    """The names of the groups `username` is in, sorted."""
    return list(
        session.scalars(
            select(GroupMember.group_name)
            .where(GroupMember.username == username)
            .order_by(GroupMember.group_name)
        )
    )


def set_memberships(
    session: Session, username: str, names: Iterable[str], *, actor: Actor = ("system", "sso")
) -> tuple[list[str], list[str]]:
    """Make `names` exactly the user's groups (single sign-on's groups claim).

    Creates the groups that do not exist yet. Refuses the whole change (DomainError) when
    a name is not a valid group name, so nothing is half-applied; the caller decides
    whether to skip such names. Returns the groups joined and the groups left, sorted.
    """
    wanted = sorted({check_group_name(name) for name in names})
    lock_chain(session)
    _require_user(session, username)
    current = set(groups_of(session, username))
    joined = [name for name in wanted if name not in current]
    left = sorted(current - set(wanted))
    for name in joined:
        if not _exists(session, name):
            _insert_group(session, name, actor)
        _insert_member(session, name, username, actor)
    for name in left:
        _delete_member(session, name, username, actor)
    return joined, left


def _exists(session: Session, name: str) -> bool:
    return session.scalar(select(Group.name).where(Group.name == name)) is not None


def _require_group(session: Session, name: str) -> None:
    if not _exists(session, name):
        raise NotFound(f"no group {name!r}")


def _require_user(session: Session, username: str) -> None:
    if session.scalar(select(User.id).where(User.username == username)) is None:
        raise NotFound(f"no user {username!r}")


def _insert_group(session: Session, name: str, actor: Actor) -> None:
    session.execute(insert(Group).values(name=name, created_at=utcnow()))
    _audit(session, actor, "group.created", {"group": name})


def _insert_member(session: Session, name: str, username: str, actor: Actor) -> None:
    session.execute(insert(GroupMember).values(group_name=name, username=username))
    _audit(session, actor, "group.member_added", {"group": name, "username": username})


def _delete_member(session: Session, name: str, username: str, actor: Actor) -> bool:
    removed = session.execute(
        delete(GroupMember).where(GroupMember.group_name == name, GroupMember.username == username)
    ).rowcount
    if removed:
        _audit(session, actor, "group.member_removed", {"group": name, "username": username})
    return bool(removed)


def _audit(session: Session, actor: Actor, event_type: str, payload: dict[str, str]) -> None:
    record_event(
        session, actor_kind=actor[0], actor_id=actor[1], event_type=event_type, payload=payload
    )
