"""Users who log in by OpenID Connect: made, updated and refused from the provider's claims.

The identity is the provider's (issuer, `sub`), kept on the user (migration 0018); the
username comes from the claim named by COUNTERSIGN_OIDC_USERNAME_CLAIM at the first
login and stays (a later change of that claim does not rename anyone). A login whose
username is already a local account, or another provider identity's, is refused: single
sign-on never takes over an account silently (docs/SSO.md).

The role comes from the groups claim (COUNTERSIGN_OIDC_GROUPS_CLAIM) through the
settings' group lists, the highest role winning; no role, no login. The user's reviewer
groups (review/groups.py) become exactly the claim's groups at each login. All of it,
the last-login stamp and the `login.succeeded` event commit together, or a refusal
commits only its `login.sso_refused` event (review/web/sso.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from review import groups as reviewer_groups
from review.audit.chain import record_event
from review.errors import DomainError
from review.identity import identity_key
from review.models import User, new_session_token, utcnow
from review.settings import Settings
from review.users import RESERVED_NAMES, USERNAME, create_user, set_role

SSO: tuple[str, str] = ("system", "sso")
ROLE_ORDER = ("admin", "reviewer", "auditor")  # the first one a user's groups give wins


class SsoRefused(DomainError):
    """The provider vouched for someone this service does not let in (`reason` says why)."""

    def __init__(self, reason: str, message: str, username: str = ""):
        super().__init__(message)
        self.reason = reason
        self.username = username


@dataclass(frozen=True)
class SsoLogin:
    user_id: int
    username: str
    role: str
    email: str | None
    session_token: str
    created: bool
    joined: tuple[str, ...]
    left: tuple[str, ...]


def claimed_groups(claims: Mapping[str, Any], claim: str) -> list[str]:
    """The groups claim as a list of names (a provider may send one name as a string)."""
    value = claims.get(claim)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [g for g in value if isinstance(g, str)]
    return []


def role_for(groups: list[str], settings: Settings) -> str | None:
    given = set(groups)
    lists = {
        "admin": settings.oidc_admin_groups,
        "reviewer": settings.oidc_reviewer_groups,
        "auditor": settings.oidc_auditor_groups,
    }
    return next((role for role in ROLE_ORDER if given & set(lists[role])), None)


def sign_in(
    session: Session, issuer: str, claims: Mapping[str, Any], settings: Settings, address: str
) -> SsoLogin:
    """The user these verified claims name, made or brought up to date, and logged in."""
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject or len(subject) > 255:
        raise SsoRefused("no_subject", "The identity provider sent no usable subject.")
    groups = claimed_groups(claims, settings.oidc_groups_claim)
    role = role_for(groups, settings)
    email = _verified_email(claims)
    user = session.scalar(
        select(User).where(User.sso_issuer == issuer, User.sso_subject == subject)
    )
    created = user is None
    if user is None:
        username = _new_username(session, claims, settings)
        if role is None:
            raise _no_role(username, settings)
        user = create_user(
            session, username, role, "", email=email, actor=SSO, sso=(issuer, subject)
        )
    else:
        username = user.username
        if not user.is_active:
            raise SsoRefused("disabled", "This account is disabled here.", username)
        if role is None:
            raise _no_role(username, settings)
        if user.role != role:
            set_role(session, username, role, actor=SSO)  # ends their other sessions
        email = email or user.email
    wanted = [g for g in groups if reviewer_groups.GROUP_NAME.match(g)]
    joined, left = reviewer_groups.set_memberships(session, username, wanted, actor=SSO)
    token = session.scalar(select(User.session_token).where(User.id == user.id)) or ""
    if not token:  # a row without a token matches no session: give it one
        token = new_session_token()
    session.execute(
        update(User)
        .where(User.id == user.id)
        .values(email=email, last_login_at=utcnow(), session_token=token)
    )
    record_event(
        session,
        actor_kind="user",
        actor_id=username,
        event_type="login.succeeded",
        payload={
            "username": username,
            "address": address,
            "method": "sso",
            "role": role,
            "email": email,
            "groups": wanted,
        },
    )
    return SsoLogin(user.id, username, role, email, token, created, tuple(joined), tuple(left))


def _new_username(session: Session, claims: Mapping[str, Any], settings: Settings) -> str:
    claim = settings.oidc_username_claim
    username = claims.get(claim)
    if not isinstance(username, str) or not USERNAME.match(username):
        raise SsoRefused(
            "bad_username",
            f"The identity provider's {claim!r} claim is no username here "
            "(1-64 letters, digits or _ . @ -).",
        )
    if identity_key(username) in RESERVED_NAMES:
        raise SsoRefused("reserved_username", f"{username!r} is reserved here.", username)
    taken = session.scalar(select(User.sso_issuer).where(User.username == username))
    exists = session.scalar(select(User.id).where(User.username == username)) is not None
    if exists:
        whose = "another single sign-on identity" if taken else "a local account"
        raise SsoRefused(
            "username_taken",
            f"The name {username!r} belongs to {whose} here; an admin must resolve it "
            "before you can log in with SSO.",
            username,
        )
    return username


def _verified_email(claims: Mapping[str, Any]) -> str | None:
    """The email claim, only when the provider says it verified it: an email here also
    counts as the person's identity as a principal (separation of duties)."""
    email = claims.get("email")
    if claims.get("email_verified") is True and isinstance(email, str) and len(email) <= 254:
        return email
    return None


def _no_role(username: str, settings: Settings) -> SsoRefused:
    return SsoRefused(
        "no_role",
        f"Your groups give you no role here (the {settings.oidc_groups_claim!r} claim names "
        "none of the admin, reviewer or auditor groups).",
        username,
    )
