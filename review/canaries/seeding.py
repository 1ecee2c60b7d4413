"""Seeding canaries: known-bad deferrals that reach the queue like an agent's own.

A canary is built the way intake builds a deferral (review/intake/preparation.py
`prepare`, review/intake/deferral_rows.py's column dict), so the policy scores it, the
diff is computed and the priority ranks it exactly as if the agent had sent it. It
belongs to a real agent (its name on the card is that agent's), wears a principal, trace
link and expiry taken from that agent's recent deferrals, and carries a webhook-id
shaped like theirs.

What differs is hidden from reviewers and from the agent: `deferrals.canary` holds its
kind, a row in `canaries` says who seeded it, and its first audit event is
`canary.seeded` by the admin (not `deferral.received` by the agent: the audit log
never says an agent sent what it did not). Reviewers see that event as the agent's
`received` while the canary is open (review/canaries/disguise.py); auditors and admins
always see it as it is.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from review.audit.chain import append_events, take_head
from review.canaries.kinds import KINDS, Kind
from review.errors import AgentKilled, DomainError, NotFound
from review.identity import identity_key
from review.ids import ulid
from review.intake.deferral_rows import deferral_values, intake_events
from review.intake.preparation import prepare
from review.models import Agent, Canary, Deferral, User, utcnow
from review.services import Services

MAX_COUNT = 50
LOOK_BACK = 50  # the agent's newest real deferrals that canaries take their looks from
FALLBACK_PRINCIPALS = (
    {"id": "maria.schultz@example.com", "display_name": "Maria Schultz"},
    {"id": "tom.becker@example.com", "display_name": "Tom Becker"},
    {"id": "priya.nair@example.com", "display_name": "Priya Nair"},
)


class SeedRefused(DomainError):
    """The canaries cannot be seeded as asked; the message says why."""


@dataclass(frozen=True)
class Seeded:
    deferral_id: str
    agent: str
    kind: str
    summary: str
    risk_level: str


@dataclass(frozen=True)
class _Looks:
    """What the agent's real deferrals look like: canaries copy it."""

    principals: list[dict[str, str]]
    traces: list[tuple[str, str]]  # (trace_id, trace_url) of recent ones that had a trace
    expires_in: list[int]
    webhook_prefixes: list[str]


def seed_canaries(
    svc: Services,
    seeded_by: tuple[str, str],
    *,
    agent_slug: str | None = None,
    count: int = 1,
    kind: str | None = None,
    rng: random.Random | None = None,
    now: datetime | None = None,
) -> list[Seeded]:
    """Seed `count` canaries for the agent (a random active agent when None), of `kind`
    (random kinds when None). `seeded_by`: the audit actor, ("user", NAME) or
    ("system", "cli")."""
    if not 1 <= count <= MAX_COUNT:
        raise SeedRefused(f"Seed between 1 and {MAX_COUNT} canaries at a time.")
    if kind is not None and kind not in KINDS:
        raise SeedRefused(f"No kind {kind!r}: choose one of {', '.join(KINDS)}.")
    rng = rng or random.SystemRandom()
    with svc.db.read() as session:
        agent = _choose_agent(session, agent_slug, rng)
        looks = _looks(session, agent.id)
        agent_id, slug = agent.id, agent.slug
    seeded = []
    for _ in range(count):
        chosen = KINDS[kind] if kind else rng.choice(list(KINDS.values()))
        seeded.append(_seed_one(svc, seeded_by, agent_id, slug, chosen, looks, rng, now))
    return seeded


def _choose_agent(session, slug: str | None, rng: random.Random) -> Agent:
    if slug is not None:
        agent = session.scalar(select(Agent).where(Agent.slug == slug))
        if agent is None or agent.deactivated_at is not None:
            raise NotFound(f"There is no active agent {slug!r}.")
        if agent.state == "killed":
            raise AgentKilled(f"Agent {slug} is stopped: a canary from it would stand out.")
        return agent
    busy = session.scalars(
        select(Agent)
        .where(Agent.state == "active", Agent.deactivated_at.is_(None))
        .order_by(Agent.slug)
    ).all()
    if not busy:
        raise SeedRefused("There is no active agent to seed a canary for.")
    return rng.choice(busy)


def _looks(session, agent_id: int) -> _Looks:
    rows = session.execute(
        select(
            Deferral.principal_id,
            Deferral.principal_name,
            Deferral.trace_id,
            Deferral.trace_url,
            Deferral.created_at,
            Deferral.expires_at,
            Deferral.webhook_id,
        )
        .where(Deferral.agent_id == agent_id, Deferral.canary.is_(None))
        .order_by(Deferral.created_at.desc())
        .limit(LOOK_BACK)
    ).all()
    # Nobody's own item: a canary on a reviewer's behalf would never be given to them.
    people = session.execute(select(User.username, User.email)).all()
    users = {identity_key(i) for row in people for i in row if i}
    principals = []
    for r in rows:
        if r.principal_id.startswith("system:") or identity_key(r.principal_id) in users:
            continue  # a canary speaks for a person, and for none of the reviewers
        p = {"id": r.principal_id}
        if r.principal_name:
            p["display_name"] = r.principal_name
        if p not in principals:
            principals.append(p)
    return _Looks(
        principals=principals or list(FALLBACK_PRINCIPALS),
        traces=[(r.trace_id, r.trace_url) for r in rows if r.trace_id and r.trace_url],
        expires_in=[int((r.expires_at - r.created_at).total_seconds()) for r in rows],
        webhook_prefixes=[_prefix(r.webhook_id) for r in rows],
    )


def _prefix(webhook_id: str) -> str:
    """ "demo-01J..." -> "demo-"; an id without a long random tail keeps none of it."""
    found = re.match(r"^(.*?[-_])?[0-9A-Za-z]{16,}$", webhook_id)
    return (found.group(1) or "") if found else "msg_"


def _dress(body: dict, looks: _Looks, rng: random.Random) -> dict:
    """The parts of the request the agent's real ones decide: principal, trace, expiry."""
    body = {**body, "on_behalf_of": rng.choice(looks.principals)}
    if looks.traces:
        trace_id, trace_url = rng.choice(looks.traces)
        fresh = "".join(rng.choice("0123456789abcdef") for _ in trace_id)
        if trace_id in trace_url:
            body["trace"] = {"id": fresh, "url": trace_url.replace(trace_id, fresh)}
    if looks.expires_in:
        body["expires_in"] = max(rng.choice(looks.expires_in), 300)
    return body


def _seed_one(
    svc: Services,
    seeded_by: tuple[str, str],
    agent_id: int,
    slug: str,
    kind: Kind,
    looks: _Looks,
    rng: random.Random,
    now: datetime | None,
) -> Seeded:
    now = now or utcnow()
    body = _dress(kind.build(rng), looks, rng)
    prepared = prepare(svc, body, slug)
    if prepared.evaluation.outcome != "ask":
        raise SeedRefused(
            f"The policy would {prepared.evaluation.outcome} a {kind.name} canary at intake "
            f"(rule {prepared.evaluation.rule}), so no reviewer would see it: choose another kind."
        )
    prefix = rng.choice(looks.webhook_prefixes) if looks.webhook_prefixes else "msg_"
    values = deferral_values(svc, agent_id, f"{prefix}{ulid()}", prepared, now)
    values["canary"] = kind.name
    received, evaluated = intake_events(slug, values, prepared)
    admin = {"actor_kind": seeded_by[0], "actor_id": seeded_by[1]}
    events = [
        {
            **received,
            **admin,
            "event_type": "canary.seeded",
            "payload": {**received["payload"], "canary": {"kind": kind.name}},
        },
        {**evaluated, **admin},
    ]
    with svc.db.write() as session:
        head = take_head(session, guard_agent=agent_id)
        if head.agent.state == "killed":
            raise AgentKilled(f"Agent {slug} is stopped: a canary from it would stand out.")
        append_events(session, head, events, insert_first=(Deferral.__table__, values))
        session.add(
            Canary(deferral_id=values["id"], kind=kind.name, seeded_by=seeded_by[1], seeded_at=now)
        )
    return Seeded(values["id"], slug, kind.name, values["summary"], values["risk_level"])
