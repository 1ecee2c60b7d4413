"""Users: reviewers, admins and auditors."""

from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from review.audit.chain import record_event
from review.errors import Conflict, DomainError
from review.models import ROLES, User

USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MIN_PASSWORD = 8
_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password(user: User, password: str) -> bool:
    try:
        return _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def create_user(
    session: Session,
    username: str,
    role: str,
    password: str,
    *,
    email: str | None = None,
    actor: tuple[str, str] = ("system", "cli"),
) -> User:
    if not USERNAME.match(username):
        raise DomainError(
            "username must be 1-64 letters, digits or _ . @ - and start with a letter or digit"
        )
    if role not in ROLES:
        raise DomainError(f"role must be one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise DomainError(f"password must be at least {MIN_PASSWORD} characters")
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"user {username!r} already exists")
    user = User(username=username, role=role, email=email, password_hash=hash_password(password))
    session.add(user)
    session.flush()
    record_event(
        session,
        actor_kind=actor[0],
        actor_id=actor[1],
        event_type="user.created",
        payload={"username": username, "role": role, "email": email},
    )
    return user


def find_user(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))
