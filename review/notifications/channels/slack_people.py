"""Who clicked: a Slack user is the Countersign user with the e-mail that Slack's
`users.info` gives for them (PROTOCOL.md section 14; the app needs the `users:read` and
`users:read.email` scopes).

Only the Slack side is cached (e-mail by Slack user, EMAIL_CACHE_SECONDS in Redis): the
Countersign side is read from the database at every click, so a user disabled, or
whose role changed, a moment ago is refused or allowed as of now. A Slack account that
Slack has deleted, a bot, an e-mail that no active Countersign user has (or that two
users share), and a user who may not decide (an auditor) are each refused with a
sentence saying so.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
from sqlalchemy import func, select

from review import redis_keys
from review.models import User
from review.notifications.channels.slack_api import QUICK_TIMEOUT, SlackError, call, web_client
from review.reviewing.claims import Holder
from review.services import Services

EMAIL_CACHE_SECONDS = 300
DECIDERS = ("admin", "reviewer")  # the roles that decide (review/web/auth.py's DECIDERS)
NO_EMAIL = "-"  # cached: Slack gave no e-mail (deleted, a bot, or no users:read.email)


class NotAReviewer(Exception):
    """The Slack user may not decide in Countersign; the message says why."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class SlackUser:
    team: str
    id: str


def slack_email(svc: Services, user: SlackUser) -> str | None:
    """The Slack user's e-mail, from the cache or `users.info` (a quick call: Slack is
    waiting for our answer to the click)."""
    client = svc.redis.client()
    try:
        cached = client.get(redis_keys.slack_email(user.team, user.id))
    except redis.RedisError:
        cached = None
    if cached is not None:
        email = cached.decode()
        return None if email == NO_EMAIL else email
    answer = call(web_client(svc.settings, QUICK_TIMEOUT), "users.info", user=user.id)
    profile = answer.get("user") or {}
    email = (profile.get("profile") or {}).get("email")
    if profile.get("deleted") or profile.get("is_bot") or not isinstance(email, str):
        email = None
    try:
        client.set(
            redis_keys.slack_email(user.team, user.id), email or NO_EMAIL, ex=EMAIL_CACHE_SECONDS
        )
    except redis.RedisError:
        pass  # the next click asks Slack again
    return email


def reviewer_for(svc: Services, user: SlackUser) -> Holder:
    """The Countersign reviewer this Slack user is, as the domain sees them (a Holder);
    NotAReviewer says why not."""
    try:
        email = slack_email(svc, user)
    except SlackError as exc:
        raise NotAReviewer(
            f"Countersign could not ask Slack who you are ({exc.message}). Try again, "
            "or decide on the deferral's page."
        ) from None
    if not email:
        raise NotAReviewer(
            "Slack gives no e-mail address for your account, so Countersign cannot tell "
            "which of its users you are."
        )
    with svc.db.read() as session:
        users = session.scalars(
            select(User).where(func.lower(User.email) == email.strip().lower())
        ).all()
        if not users:
            raise NotAReviewer(f"No Countersign user has the e-mail {email}.")
        if len(users) > 1:
            raise NotAReviewer(
                f"More than one Countersign user has the e-mail {email}: an admin must "
                "give each their own before you can decide from Slack."
            )
        [found] = users
        if not found.is_active:
            raise NotAReviewer(f"The Countersign user {found.username} is disabled.")
        if found.role not in DECIDERS:
            raise NotAReviewer(
                f"The Countersign user {found.username} is {_a(found.role)}, who may not "
                "approve or reject."
            )
        identities = frozenset(i.lower() for i in (found.username, found.email) if i)
        return Holder(found.id, found.username, identities)


def _a(role: str) -> str:
    return f"an {role}" if role[:1] in "aeiou" else f"a {role}"
