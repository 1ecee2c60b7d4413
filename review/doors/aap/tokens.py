"""Bearer tokens for the AAP door: an agent's own, and the credentials of its instances.

A token is `aap_` and 32 random bytes (URL-safe base64); the database keeps only its
SHA-256 (a slow hash buys nothing against 256 random bits), so no page, command or
backup can show one again. `agents aap-token SLUG` gives the agent a new token; its
earlier tokens keep working for COUNTERSIGN_SECRET_OVERLAP, like its signing secrets.

The agent's own token makes AAP requests and registers instances (it is the agent's
provisioner token); an instance's credential, issued when it registered, makes AAP
requests only, and sees only its own requests.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update

from review.agents.registry import find_agent
from review.audit.chain import record_event
from review.errors import InvalidState, NotFound
from review.models import Agent, utcnow
from review.services import Services

from .tables import AapToken

PREFIX = "aap_"
MAX_TOKEN = 200  # longer is not one of ours: not even hashed


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Credential:
    """Who an AAP request comes from: the agent, and its instance (None: the agent's token)."""

    agent_id: int
    slug: str
    instance_id: str | None

    @property
    def may_provision(self) -> bool:
        return self.instance_id is None


def authenticate(svc: Services, token: str, now: datetime | None = None) -> Credential | None:
    """The credential a live token belongs to; None for anything else (one answer: 401)."""
    if not token or len(token) > MAX_TOKEN or not token.isascii():
        return None
    now = now or utcnow()
    tokens, agents = AapToken.__table__, Agent.__table__
    with svc.db.read() as session:
        row = session.execute(
            select(tokens.c.agent_id, agents.c.slug, tokens.c.instance_id)
            .join(agents, agents.c.id == tokens.c.agent_id)
            .where(
                tokens.c.token_hash == token_hash(token),
                or_(tokens.c.expires_at.is_(None), tokens.c.expires_at > now),
                agents.c.deactivated_at.is_(None),
            )
        ).first()
    return None if row is None else Credential(row.agent_id, row.slug, row.instance_id)


def issue_agent_token(svc: Services, slug: str, actor: tuple[str, str] = ("system", "cli")) -> str:
    """A new token for the agent; its current ones expire after the overlap. Audited."""
    now = utcnow()
    until = now + timedelta(seconds=svc.settings.secret_overlap)
    table = AapToken.__table__
    with svc.db.write() as session:
        agent = find_agent(session, slug)
        if agent is None:
            raise NotFound(f"There is no agent {slug!r}.")
        if agent.deactivated_at is not None:
            raise InvalidState(f"{slug} is deactivated: it gets no new tokens.")
        mine = [table.c.agent_id == agent.id, table.c.instance_id.is_(None)]
        retiring = session.execute(
            update(table)
            .where(*mine, or_(table.c.expires_at.is_(None), table.c.expires_at > until))
            .values(expires_at=until)
        ).rowcount
        token = new_token()
        session.add(AapToken(agent_id=agent.id, token_hash=token_hash(token), created_at=now))
        record_event(
            session,
            actor_kind=actor[0],
            actor_id=actor[1],
            event_type="agent.aap_token_issued",
            agent=slug,
            payload={"retiring": retiring, "old_tokens_valid_until": until.isoformat()},
            at=now,
        )
    return token


def add_instance_credential(session, agent_id: int, instance_id: str, now: datetime) -> str:
    """A credential for a newly registered instance (in the registration's transaction)."""
    token = new_token()
    session.add(
        AapToken(
            agent_id=agent_id,
            instance_id=instance_id,
            token_hash=token_hash(token),
            created_at=now,
        )
    )
    return token
