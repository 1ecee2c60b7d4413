"""The agent registry: slugs, owners, signing secrets, callback URLs."""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from review.audit import record_event
from review.errors import Conflict, DomainError
from review.models import Agent, AgentSecret, User, utcnow
from review.sealing import SecretBox, fingerprint

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)


def new_secret() -> str:
    """`whsec_` and the base64 of 32 random bytes (Standard Webhooks' secret format)."""
    return SECRET_PREFIX + base64.b64encode(os.urandom(32)).decode()


def validate_callback_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DomainError("callback URL must be an absolute http:// or https:// URL")
    if parts.username or parts.password:
        raise DomainError("callback URL must not carry credentials")
    return url


@dataclass(frozen=True)
class CreatedAgent:
    agent: Agent
    secret: str  # shown once, never stored in the clear


def create_agent(
    session: Session,
    box: SecretBox,
    slug: str,
    owners: list[str],
    *,
    name: str | None = None,
    callback_url: str | None = None,
    actor: tuple[str, str] = ("system", "cli"),
) -> CreatedAgent:
    if not SLUG.match(slug):
        raise DomainError("slug must match [a-z0-9][a-z0-9-]{0,62}")
    if not owners:
        raise DomainError("an agent needs at least one owner")
    if callback_url:
        validate_callback_url(callback_url)
    if session.scalar(select(Agent.id).where(Agent.slug == slug)) is not None:
        raise Conflict(f"agent {slug!r} already exists")
    owner_users = []
    for username in dict.fromkeys(owners):
        user = session.scalar(select(User).where(User.username == username))
        if user is None:
            raise DomainError(f"owner {username!r} is not a user; create them first")
        owner_users.append(user)
    secret = new_secret()
    agent = Agent(
        slug=slug,
        name=name or slug,
        callback_url=callback_url,
        state="active",
        state_changed_by=actor[1],
        state_reason="created",
        owners=owner_users,
    )
    agent.secrets.append(AgentSecret(ciphertext=box.seal(secret), fingerprint=fingerprint(secret)))
    session.add(agent)
    session.flush()
    record_event(
        session,
        actor_kind=actor[0],
        actor_id=actor[1],
        event_type="agent.created",
        agent=slug,
        payload={
            "slug": slug,
            "name": agent.name,
            "owners": [u.username for u in owner_users],
            "callback_url": callback_url,
            "secret_fingerprint": fingerprint(secret),
        },
    )
    return CreatedAgent(agent, secret)


def find_agent(session: Session, slug: str) -> Agent | None:
    return session.scalar(select(Agent).where(Agent.slug == slug))


def list_agents(session: Session) -> list[Agent]:
    return list(session.scalars(select(Agent).order_by(Agent.slug)))


class SecretCache:
    """Opened agent secrets by row id, per process: opening one costs more than its HMAC."""

    def __init__(self, box: SecretBox):
        self.box = box
        self._opened: dict[int, str] = {}

    def secrets_for(self, agent: Agent, now: datetime | None = None) -> list[str]:
        """The secrets that may sign this agent's requests now (more than one in rotation)."""
        now = now or utcnow()
        live = []
        for row in agent.secrets:
            if row.expires_at is not None and row.expires_at <= now:
                continue
            if row.id not in self._opened:
                self._opened[row.id] = self.box.open(row.ciphertext)
            live.append(self._opened[row.id])
        return live
