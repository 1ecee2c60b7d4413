"""Administering the agent registry: each operation is one audited transaction.

The registry's building blocks (review/agents/registry.py) work inside a caller's
session; these are the operations pages and commands call. Each opens its own
transaction; after it commits, every process drops the agent's cached signer, so the
next request anywhere sees the change (a breaker override or a new secret): the
building blocks note it (`note_agent_changed`, review/callbacks/wakeups.py).
"""

from __future__ import annotations

from typing import Any

from review.agents.registry import CreatedAgent, create_agent, find_agent, rotate_secret
from review.agents.registry import update_agent as _update_agent
from review.errors import InvalidState, NotFound
from review.models import Agent, User
from review.services import Services


def register_agent(
    svc: Services,
    slug: str,
    owners: list[str],
    *,
    name: str | None = None,
    callback_url: str | None = None,
    trace_url_template: str | None = None,
    actor: tuple[str, str] = ("system", "cli"),
) -> CreatedAgent:
    """A new agent and its first secret (shown once by the caller)."""
    with svc.db.write() as session:
        return create_agent(
            session,
            svc.box,
            slug,
            owners,
            name=name,
            callback_url=callback_url,
            trace_url_template=trace_url_template,
            allow_private_callbacks=svc.settings.allow_private_callbacks,
            actor=actor,
        )


def change_agent(svc: Services, slug: str, *, actor: tuple[str, str], **changes: Any) -> list[str]:
    """Change name, owners, callback URL, trace template, breaker overrides; what changed."""
    with svc.db.write() as session:
        agent = _existing(session, slug)
        changed = _update_agent(
            session,
            agent,
            allow_private_callbacks=svc.settings.allow_private_callbacks,
            actor=actor,
            **changes,
        )
    return list(changed)


def rotate_agent_secret(svc: Services, slug: str, actor: tuple[str, str]) -> tuple[Agent, str]:
    """A new signing secret; the old ones keep verifying for COUNTERSIGN_SECRET_OVERLAP."""
    with svc.db.write() as session:
        agent = _existing(session, slug)
        if agent.deactivated_at is not None:
            raise InvalidState(f"{slug} is deactivated: its secrets stay retired.")
        secret = rotate_secret(session, svc.box, agent, svc.settings.secret_overlap, actor)
    return agent, secret


def active_usernames(svc: Services) -> list[str]:
    """Who may be named an owner."""
    with svc.db.read() as session:
        rows = session.query(User.username).filter(User.is_active).order_by(User.username)
        return [username for (username,) in rows]


def _existing(session: Any, slug: str) -> Agent:
    agent = find_agent(session, slug)
    if agent is None:
        raise NotFound(f"There is no agent {slug!r}.")
    return agent
