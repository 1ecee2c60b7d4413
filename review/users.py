"""Users: reviewers, admins and auditors, and the ending of their sessions.

A browser session is honoured only while it carries the user's current
`session_token` (review/web/auth.py). Logging out, changing the password or role and
disabling the user replace the token, so every session of that user, a copied
cookie included, stops working at its next request. Each change commits with its
audit event.
"""

from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from review.audit.chain import record_event
from review.errors import Conflict, DomainError, NotFound
from review.identity import identity_key
from review.models import ROLES, User, new_session_token, utcnow

USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
# Names that mean no person: `decided_by: ["policy"]` is a decision the risk policy made
# (PROTOCOL.md section 10), so no user may be called that, nor anything that looks like it.
RESERVED_NAMES = frozenset({identity_key("policy")})
# The password hash of a user who logs in by single sign-on: no argon2 hash, so no
# password ever matches it (check_password answers False).
NO_PASSWORD = "!sso"  # noqa: S105
MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # the login form takes no longer one
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
    sso: tuple[str, str] | None = None,
) -> User:
    """A new user. With `sso` (the OpenID provider's issuer and subject) the user has no
    password here and logs in only through that provider (review/sso_accounts.py)."""
    if not USERNAME.match(username):
        raise DomainError(
            "username must be 1-64 letters, digits or _ . @ - and start with a letter or digit"
        )
    if identity_key(username) in RESERVED_NAMES:
        raise DomainError(f"{username!r} is reserved: decisions by the risk policy carry it")
    if role not in ROLES:
        raise DomainError(f"role must be one of {', '.join(ROLES)}")
    if sso is None:
        _check_password_length(password)
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"user {username!r} already exists")
    user = User(
        username=username,
        role=role,
        email=email,
        password_hash=NO_PASSWORD if sso else hash_password(password),
        sso_issuer=sso[0] if sso else None,
        sso_subject=sso[1] if sso else None,
    )
    session.add(user)
    session.flush()
    payload = {"username": username, "role": role, "email": email}
    if sso:
        payload["sso_issuer"] = sso[0]
    record_event(
        session,
        actor_kind=actor[0],
        actor_id=actor[1],
        event_type="user.created",
        payload=payload,
    )
    return user


def find_user(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def set_password(
    session: Session, username: str, password: str, *, actor: tuple[str, str] = ("system", "cli")
) -> None:
    """A new password; the user's sessions end."""
    _check_password_length(password)
    user = find_user(session, username)
    if user is None:
        raise NotFound(f"no user {username!r}")
    if user.sso_subject is not None:
        raise DomainError(f"{username} logs in with SSO: their password is the provider's")
    _change(
        session, username, actor, "user.password_changed", password_hash=hash_password(password)
    )


def disable_user(
    session: Session, username: str, *, actor: tuple[str, str] = ("system", "cli")
) -> bool:
    """The user can no longer log in and their sessions end. False if already disabled."""
    _not_oneself(actor, username, "disable")
    return _change(session, username, actor, "user.disabled", only_if_active=True, is_active=False)


def enable_user(
    session: Session, username: str, *, actor: tuple[str, str] = ("system", "cli")
) -> bool:
    """The user may log in again (with a new session). False if they were not disabled."""
    return _change(session, username, actor, "user.enabled", only_if_active=False, is_active=True)


def set_role(
    session: Session, username: str, role: str, *, actor: tuple[str, str] = ("system", "cli")
) -> bool:
    """The user's new role; their sessions end. False if they already had it."""
    if role not in ROLES:
        raise DomainError(f"role must be one of {', '.join(ROLES)}")
    _not_oneself(actor, username, "change the role of")
    user = find_user(session, username)
    if user is None:
        raise NotFound(f"no user {username!r}")
    previous = user.role
    changed = session.execute(
        update(User)
        .where(User.username == username, User.role != role)
        .values(role=role, session_token=new_session_token())
    ).rowcount
    if not changed:
        return False
    record_event(
        session,
        actor_kind=actor[0],
        actor_id=actor[1],
        event_type="user.role_changed",
        payload={"username": username, "role": role, "previous_role": previous},
    )
    return True


def record_login(session: Session, user_id: int) -> None:
    """When the user last logged in (the admins' users page shows it)."""
    session.execute(update(User).where(User.id == user_id).values(last_login_at=utcnow()))


def log_out(session: Session, user_id: int) -> None:
    """End every session of the user (they asked to log out)."""
    username = session.scalar(select(User.username).where(User.id == user_id))
    if username is not None:
        _change(session, username, ("user", username), "user.logged_out")


def _change(
    session: Session,
    username: str,
    actor: tuple[str, str],
    event_type: str,
    *,
    only_if_active: bool | None = None,
    **values: object,
) -> bool:
    """One conditional UPDATE that also replaces the session token, and its audit event."""
    if find_user(session, username) is None:
        raise NotFound(f"no user {username!r}")
    statement = update(User).where(User.username == username)
    if only_if_active is not None:
        statement = statement.where(User.is_active.is_(only_if_active))
    changed = session.execute(
        statement.values(session_token=new_session_token(), **values)
    ).rowcount
    if not changed:
        return False
    record_event(
        session,
        actor_kind=actor[0],
        actor_id=actor[1],
        event_type=event_type,
        payload={"username": username},
    )
    return True


def _not_oneself(actor: tuple[str, str], username: str, doing: str) -> None:
    """A person does not lock themselves out: an admin who could disable or demote
    themselves on the users page could leave no admin to undo it."""
    if actor == ("user", username):
        raise DomainError(f"you cannot {doing} yourself; another admin can")


def _check_password_length(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise DomainError(f"password must be at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise DomainError(f"password must be at most {MAX_PASSWORD} characters")


def set_keyboard_shortcuts(session: Session, user_id: int, on: bool) -> bool:
    """Turn the user's single-key shortcuts on or off (their own choice: sessions stay);
    audited when it changes. Whether it changed."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("no such user")
    if user.keyboard_shortcuts == on:
        return False
    session.execute(update(User).where(User.id == user_id).values(keyboard_shortcuts=on))
    record_event(
        session,
        actor_kind="user",
        actor_id=user.username,
        event_type="user.settings_changed",
        payload={"username": user.username, "keyboard_shortcuts": on},
    )
    return True


def set_email(
    session: Session, username: str, email: str, *, actor: tuple[str, str] = ("system", "cli")
) -> None:
    """Set (or, with "", clear) the user's e-mail: where notifications reach them, and
    their identity as a principal (PROTOCOL.md section 14)."""
    from review.notifications.channels.email import valid_address

    email = email.strip()
    if email and valid_address(email) is None:
        raise DomainError(f"{email[:100]!r} is not an e-mail address like name@example.com")
    user = find_user(session, username)
    if user is None:
        raise NotFound(f"no user {username!r}")
    user.email = email or None
    record_event(
        session,
        actor_kind=actor[0],
        actor_id=actor[1],
        event_type="user.email_changed",
        payload={"username": username, "email": email or None},
    )
