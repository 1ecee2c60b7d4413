"""The agent registry: slugs, owners, signing secrets, callback URLs."""

from __future__ import annotations

import base64
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from review.audit.chain import record_event
from review.callbacks.outbound import OutboundRefused, resolve
from review.callbacks.wakeups import note_agent_changed
from review.errors import Conflict, DomainError
from review.models import Agent, AgentOwner, AgentSecret, User, utcnow
from review.sealing import SealError, SecretBox, fingerprint
from review.settings import SettingsError, parse_flood

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
RESERVED_SLUGS = frozenset({"new", "state", "stop-all", "revive-all"})  # pages under /agents/
log = logging.getLogger(__name__)


def new_secret() -> str:
    """`whsec_` and the base64 of 32 random bytes (Standard Webhooks' secret format)."""
    return SECRET_PREFIX + base64.b64encode(os.urandom(32)).decode()


def validate_callback_url(url: str, *, allow_private: bool) -> str:
    """Checked at registration as at every attempt (review/callbacks/outbound.py)."""
    try:
        resolve(url, allow_private=allow_private)
    except OutboundRefused as exc:
        raise DomainError(str(exc)) from None
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
    trace_url_template: str | None = None,
    allow_private_callbacks: bool = False,
    actor: tuple[str, str] = ("system", "cli"),
) -> CreatedAgent:
    """Register an agent with a new signing secret; audited as `agent.created`."""
    if not SLUG.match(slug):
        raise DomainError("slug must match [a-z0-9][a-z0-9-]{0,62}")
    if slug in RESERVED_SLUGS:
        raise DomainError(f"{slug!r} is taken by a page under /agents/; choose another slug")
    owner_users = _owners_by_name(session, owners)
    if callback_url:
        validate_callback_url(callback_url, allow_private=allow_private_callbacks)
    trace_url_template = validate_trace_template(trace_url_template)
    if session.scalar(select(Agent.id).where(Agent.slug == slug)) is not None:
        raise Conflict(f"agent {slug!r} already exists")
    secret = new_secret()
    agent = Agent(
        slug=slug,
        name=name or slug,
        callback_url=callback_url,
        trace_url_template=trace_url_template,
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
            "trace_url_template": trace_url_template,
            "secret_fingerprint": fingerprint(secret),
        },
    )
    return CreatedAgent(agent, secret)


def find_agent(session: Session, slug: str) -> Agent | None:
    return session.scalar(select(Agent).where(Agent.slug == slug))


def is_owner(session: Session, agent_id: int, user_id: int) -> bool:
    return (
        session.scalar(
            select(AgentOwner.user_id).where(
                AgentOwner.agent_id == agent_id, AgentOwner.user_id == user_id
            )
        )
        is not None
    )


def may_operate(session: Session, agent: Agent, user_id: int, role: str) -> bool:
    """Admins and the agent's owners may flip its switch and redeliver its callbacks."""
    return role == "admin" or is_owner(session, agent.id, user_id)


def list_agents(session: Session) -> list[Agent]:
    query = select(Agent).options(selectinload(Agent.owners), selectinload(Agent.secrets))
    return list(session.scalars(query.order_by(Agent.slug)))


@dataclass(frozen=True)
class Signer:
    """What an agent's request needs: its id and slug, its secrets, its flood breaker."""

    id: int
    slug: str
    secrets: tuple[tuple[int, str, datetime | None], ...]  # (row id, ciphertext, expires_at)
    breaker_flood: str | None = None  # the agent's own setting, if it has one


def signers(
    session: Session,
    slug: str | None = None,
    agent_id: int | None = None,
    *,
    include_deactivated: bool = False,
) -> list[Signer]:
    """Signers (one agent by slug or id, or all), in one query: every API request needs it.

    A deactivated agent has none, so its requests answer 401; delivery still signs the
    callbacks it was owed (`include_deactivated`).
    """
    agents, keys = Agent.__table__, AgentSecret.__table__
    query = (
        select(
            agents.c.id,
            agents.c.slug,
            agents.c.breaker_flood,
            keys.c.id,
            keys.c.ciphertext,
            keys.c.expires_at,
        )
        .join(keys, keys.c.agent_id == agents.c.id)
        .order_by(agents.c.id, keys.c.id)
    )
    if slug is not None:
        query = query.where(agents.c.slug == slug)
    if agent_id is not None:
        query = query.where(agents.c.id == agent_id)
    if not include_deactivated:
        query = query.where(agents.c.deactivated_at.is_(None))
    grouped: dict[int, tuple[str, str | None, list]] = {}
    for found_id, found_slug, flood, key_id, ciphertext, expires_at in session.execute(query):
        entry = grouped.setdefault(found_id, (found_slug, flood, []))
        entry[2].append((key_id, ciphertext, expires_at))
    return [Signer(i, s, tuple(rows), flood) for i, (s, flood, rows) in grouped.items()]


class SecretCache:
    """Per process: signers by slug for a few seconds, and opened secrets by row id.

    Opening a secret costs more than the HMAC it feeds, and reading the signer costs a
    database round trip on every request. A cached signer is only trusted to say yes:
    when it does not verify a request, the caller asks again with `fresh=True`, so a
    newly rotated secret works at once. Expiry times travel with the cached rows and
    are checked at every use.

    A rotation, a deactivation or a change of settings in any process drops the signer
    here as soon as its pub/sub message arrives: the writer notes `note_agent_changed`
    (review/callbacks/wakeups.py), and the status cache's listener, which this cache
    joins (`listener`, review/agents/status_cache.py), forgets the slug in every process.
    So a revoked secret stops verifying everywhere in the time a message takes, and by
    IN_STEP_SECONDS while the listener is in step. When Redis is down or the listener
    is out of step, no message can come: a signer is then kept TTL_SECONDS at most, the
    bound a change had before the messages (and the bound on a change made by hand).
    """

    TTL_SECONDS = 10.0

    def __init__(self, box: SecretBox, listener: Any = None):
        self.box = box
        self._opened: dict[int, str] = {}
        self._signers: dict[str, tuple[float, Signer]] = {}
        self._lock = threading.Lock()
        # Bumped by every forget: a read that began before one may not be kept.
        self._generation = 0
        self._listener = listener
        if listener is not None:
            listener.also_forget(self.forget)

    def cached(self, slug: str) -> Signer | None:
        """The signer read less than TTL_SECONDS ago, with no database at hand; else None."""
        if self._listener is not None:
            self._listener.ensure_listening()
        cached = self._signers.get(slug)
        if cached and time.monotonic() - cached[0] < self.TTL_SECONDS:
            return cached[1]
        return None

    def signer(self, session: Session, slug: str, *, fresh: bool = False) -> Signer | None:
        cached = None if fresh else self.cached(slug)
        if cached is not None:
            return cached
        generation = self._generation
        now = time.monotonic()
        found = signers(session, slug=slug)
        with self._lock:
            if not found:
                self._signers.pop(slug, None)
                return None
            if generation == self._generation:  # no change was announced during the read
                self._signers[slug] = (now, found[0])
        return found[0]

    def forget(self, slug: str | None = None) -> None:
        """Drop the cached signer (or all): its secrets or settings changed somewhere."""
        with self._lock:
            self._generation += 1
            if slug is None:
                self._signers.clear()
            else:
                self._signers.pop(slug, None)

    def secrets_for(self, signer: Signer, now: datetime | None = None) -> list[str]:
        """The secrets that may sign this agent's requests now (more than one in rotation)."""
        now = now or utcnow()
        live = []
        for key_id, ciphertext, expires_at in signer.secrets:
            if expires_at is not None and expires_at <= now:
                continue
            if key_id not in self._opened:
                try:
                    self._opened[key_id] = self.box.open(ciphertext)
                except SealError:  # SECRET_KEY changed without the old one in the fallbacks
                    log.error(
                        "agent %s: its secret %s opens with neither SECRET_KEY nor "
                        "SECRET_KEY_FALLBACKS (docs/SECRETS.md)",
                        signer.slug,
                        key_id,
                    )
                    continue
            live.append(self._opened[key_id])
        return live


TRACE_PLACEHOLDER = "{trace_id}"


def validate_trace_template(template: str | None) -> str | None:
    template = (template or "").strip() or None
    if template is None:
        return None
    if not template.startswith(("https://", "http://")) or TRACE_PLACEHOLDER not in template:
        raise DomainError(f"A trace URL template is an http(s) URL holding {TRACE_PLACEHOLDER}.")
    if len(template) > 2000:
        raise DomainError("Keep the trace URL template under 2000 characters.")
    return template


def trace_link(template: str | None, trace_id: str | None) -> str | None:
    """The agent's trace URL for a trace id, when it sent an id but no URL."""
    if not template or not trace_id:
        return None
    return template.replace(TRACE_PLACEHOLDER, quote(trace_id, safe=""))


def _owners_by_name(session: Session, owners: list[str]) -> list[User]:
    names = [o.strip() for o in owners if o.strip()]
    if not names:
        raise DomainError("An agent needs at least one owner.")
    users = []
    for username in dict.fromkeys(names):
        user = session.scalar(select(User).where(User.username == username))
        if user is None:
            raise DomainError(f"Owner {username!r} is not a user; create them first.")
        users.append(user)
    return users


def update_agent(
    session: Session,
    agent: Agent,
    *,
    name: str,
    owners: list[str],
    callback_url: str | None,
    trace_url_template: str | None,
    breaker_flood: str | None,
    breaker_rejections: int | None,
    allow_private_callbacks: bool,
    actor: tuple[str, str],
) -> dict[str, Any]:
    """Change an agent's settings; audited as `agent.updated` with what changed."""
    name = name.strip()
    if not name or len(name) > 200:
        raise DomainError("A name is 1 to 200 characters.")
    callback_url = (callback_url or "").strip() or None
    if callback_url and callback_url != agent.callback_url:
        validate_callback_url(callback_url, allow_private=allow_private_callbacks)
    trace_url_template = validate_trace_template(trace_url_template)
    if breaker_flood is not None:
        try:
            parse_flood("flood breaker", breaker_flood)
        except SettingsError as exc:
            raise DomainError(str(exc)) from None
    if breaker_rejections is not None and not 0 <= breaker_rejections <= 10000:
        raise DomainError("Rejections in a row: 0 (off) to 10000.")
    owner_users = _owners_by_name(session, owners)
    before = _settings_of(agent)
    agent.name = name
    agent.callback_url = callback_url
    agent.trace_url_template = trace_url_template
    agent.breaker_flood = breaker_flood
    agent.breaker_rejections = breaker_rejections
    agent.owners = owner_users
    after = _settings_of(agent)
    changes = {k: {"from": before[k], "to": after[k]} for k in after if before[k] != after[k]}
    if changes:
        record_event(
            session,
            actor_kind=actor[0],
            actor_id=actor[1],
            event_type="agent.updated",
            agent=agent.slug,
            payload={"changes": changes},
        )
        note_agent_changed(session, agent.slug)  # the breaker override travels with the signer
    return changes


def _settings_of(agent: Agent) -> dict[str, Any]:
    return {
        "name": agent.name,
        "owners": sorted(u.username for u in agent.owners),
        "callback_url": agent.callback_url,
        "trace_url_template": agent.trace_url_template,
        "breaker_flood": agent.breaker_flood,
        "breaker_rejections": agent.breaker_rejections,
    }


def rotate_secret(
    session: Session,
    box: SecretBox,
    agent: Agent,
    overlap_seconds: int,
    actor: tuple[str, str],
    now: datetime | None = None,
) -> str:
    """A new signing secret; the current ones keep verifying for `overlap_seconds` more."""
    now = now or utcnow()
    until = now + timedelta(seconds=overlap_seconds)
    retiring = []
    for old in agent.secrets:
        if old.expires_at is None or old.expires_at > until:
            old.expires_at = until
        if old.expires_at > now:
            retiring.append(old.fingerprint)
    secret = new_secret()
    agent.secrets.append(AgentSecret(ciphertext=box.seal(secret), fingerprint=fingerprint(secret)))
    session.flush()
    record_event(
        session,
        actor_kind=actor[0],
        actor_id=actor[1],
        event_type="agent.secret_rotated",
        agent=agent.slug,
        payload={
            "new_fingerprint": fingerprint(secret),
            "retiring": retiring,
            "old_secrets_valid_until": until.isoformat(),
        },
        at=now,
    )
    note_agent_changed(session, agent.slug)  # every process's cached signer has the old expiry
    return secret
