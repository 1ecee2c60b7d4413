"""What the reviewer pages read: the queue, a batch, one deferral's evidence chain.

Every query here is bounded: the queue shows the top rows by the stored rank (an index
scan), and its counts stop at COUNT_CAP per level, so the page costs the same at a
hundred pending deferrals as at a hundred thousand.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis
from sqlalchemy import bindparam, func, literal_column, select
from sqlalchemy.orm import Session

from review import redis_keys
from review.intake.policy import LEVELS
from review.models import Agent, Approval, AuditEvent, Deferral, utcnow
from review.reviewing.claim_barriers import Barrier, barriers_for
from review.reviewing.claims import Holder, held_ids, standing

QUEUE_ROWS = 50
COUNT_CAP = 1000


@dataclass(frozen=True)
class QueueFilter:
    agent: str = ""
    level: str = ""
    label: str = ""  # key=value
    text: str = ""

    @classmethod
    def parse(cls, args: Any) -> QueueFilter:
        level = args.get("level", "").strip().lower()
        return cls(
            agent=args.get("agent", "").strip()[:63],
            level=level if level in LEVELS else "",
            label=args.get("label", "").strip()[:200],
            text=args.get("q", "").strip()[:200],
        )

    def query(self) -> dict[str, str]:
        """The filters as the queue's query string names them, only those set."""
        named = {"agent": self.agent, "level": self.level, "label": self.label, "q": self.text}
        return {k: v for k, v in named.items() if v}

    @property
    def active(self) -> bool:
        return bool(self.agent or self.level or self.label or self.text)

    def conditions(self) -> list:
        """The queue's rows: pending and matching the filters."""
        return [Deferral.status == "pending", *self.claim_conditions()]

    def claim_conditions(self) -> list:
        """The filters alone: what Start batch adds to what a reviewer may claim."""
        out = []
        if self.agent:
            out.append(
                Deferral.agent_id
                == select(Agent.id).where(Agent.slug == self.agent).scalar_subquery()
            )
        if self.level:
            out.append(Deferral.risk_level == self.level)
        if self.label:
            key, _, value = self.label.partition("=")
            out.append(Deferral.labels[key.strip()].as_string() == value.strip())
        if self.text:
            pattern = (
                "%"
                + self.text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                + "%"
            )
            out.append(func.lower(Deferral.summary).like(pattern, escape="\\"))
        return out


def queue_rows(
    session: Session, flt: QueueFilter, limit: int = QUEUE_ROWS, first_for: str | None = None
) -> list[Any]:
    """The rows the queue shows: only the columns it needs (the large JSON blobs stay on
    disk). `first_for`: a reviewer, whose handed-over items come first (a second small
    query, so the main one stays an index scan by rank)."""
    if first_for:
        mine = _rows(session, [*flt.conditions(), Deferral.handed_to == first_for], limit)
        rest = [r for r in _rows(session, flt.conditions(), limit) if r.handed_to != first_for]
        return (mine + rest)[:limit]
    return _rows(session, flt.conditions(), limit)


def _rows(session: Session, conditions: list, limit: int) -> list[Any]:
    return list(
        session.execute(
            select(
                Deferral.id,
                Deferral.priority,
                Deferral.risk_score,
                Deferral.risk_level,
                Deferral.summary,
                Deferral.tool,
                Deferral.principal_id,
                Deferral.principal_name,
                Deferral.principal_verified,  # small: issuer and groups, or null
                Deferral.principal_key,  # whether the reviewer may claim it
                Deferral.expires_at,
                Deferral.route_group,
                Deferral.required_approvals,
                select(func.count())
                .where(Approval.deferral_id == Deferral.id)
                .scalar_subquery()
                .label("approval_count"),
                Deferral.not_before,
                Deferral.handed_to,
                Deferral.set_aside,
                Agent.slug.label("agent_slug"),
            )
            .join(Agent, Agent.id == Deferral.agent_id)
            .where(*conditions)
            .order_by(Deferral.rank.desc())
            .limit(limit)
        )
    )


COUNTS_TTL = 3  # seconds: every reviewer's page refreshes every 10 s; they share one count


def cached_level_counts(session: Session, client: redis.Redis) -> dict[str, int]:
    """level_counts, shared through Redis for a few seconds (computed afresh if Redis is down)."""
    try:
        cached = client.get(redis_keys.QUEUE_LEVEL_COUNTS)
        if cached:
            return json.loads(cached)
    except redis.RedisError:
        return level_counts(session)
    counts = level_counts(session)
    with contextlib.suppress(redis.RedisError):
        client.set(redis_keys.QUEUE_LEVEL_COUNTS, json.dumps(counts), ex=COUNTS_TTL)
    return counts


def level_counts(session: Session) -> dict[str, int]:
    """Pending deferrals per risk level, each counted up to COUNT_CAP (shown as 1000+)."""
    counts = {}
    for level in LEVELS:
        capped = (  # a constant, not a column: the count reads the index alone
            select(literal_column("1"))
            .where(Deferral.status == "pending", Deferral.risk_level == level)
            .limit(COUNT_CAP)
            .subquery()
        )
        counts[level] = session.scalar(select(func.count()).select_from(capped))
    return counts


@dataclass(frozen=True)
class QueuePage:
    """What /queue renders. The 10-second refresh (`partial`) swaps in the rows and the
    counts alone; the batch button and the agent filter belong to the full page."""

    rows: list[Any]
    counts: dict[str, int]
    held: int = 0  # "Continue your batch (N)"
    agents: list[str] = field(default_factory=list)  # the agent filter's options
    # Rows the reviewer may not claim, by id: why not, shown instead of Claim.
    barriers: dict[str, Barrier] = field(default_factory=dict)


def queue_page(
    session: Session,
    client: redis.Redis,
    flt: QueueFilter,
    holder: Holder | None,
    *,
    partial: bool,
    now: datetime | None = None,
) -> QueuePage:
    """The queue as a reviewer (`holder`, None for people who may not decide) sees it."""
    now = now or utcnow()
    rows = queue_rows(session, flt, first_for=holder.username if holder else None)
    counts = cached_level_counts(session, client)
    barriers = (
        barriers_for(session, rows, holder, standing(session, holder), now)
        if holder is not None and rows
        else {}
    )
    if partial:
        return QueuePage(rows, counts, barriers=barriers)
    held = len(held_ids(session, holder, now)) if holder is not None else 0
    agents = list(session.scalars(select(Agent.slug).order_by(Agent.slug)))
    return QueuePage(rows, counts, held, agents, barriers)


def approvals_of(session: Session, items: list[Deferral]) -> dict[str, list[str]]:
    """Each deferral's approvers so far, in order (one query for them all): what the
    card's "1 of N approvals" names."""
    out: dict[str, list[str]] = {d.id: [] for d in items}
    for d in items:
        if d.status == "approved":
            out[d.id] = d.approvers
    asked = [d.id for d in items if d.status != "approved" and d.required_approvals > 1]
    if asked:
        for deferral_id, username in session.execute(
            select(Approval.deferral_id, Approval.username)
            .where(Approval.deferral_id.in_(asked))
            .order_by(Approval.approved_at, Approval.username)
        ):
            out[deferral_id].append(username)
    return out


def batch_items(session: Session, ids: list[str]) -> list[Deferral]:
    """The batch's deferrals (their agents joined), in the order of `ids`."""
    if not ids:
        return []
    rows = {d.id: d for d in session.scalars(_BATCH_ITEMS, {"ids": ids})}
    return [rows[i] for i in ids if i in rows]


# Built once: the ids are its one parameter (building it and its cache key at every page
# was a fifth of this read's CPU under cProfile).
_BATCH_ITEMS = select(Deferral).where(Deferral.id.in_(bindparam("ids", expanding=True)))


@dataclass(frozen=True)
class ChainLink:
    seq: int
    at: Any
    actor: str
    event_type: str
    payload: dict[str, Any]
    hash: str


def evidence_chain(session: Session, deferral_id: str) -> list[ChainLink]:
    events = session.scalars(
        select(AuditEvent).where(AuditEvent.deferral_id == deferral_id).order_by(AuditEvent.seq)
    )
    return [
        ChainLink(
            e.seq, e.at, f"{e.actor_kind}:{e.actor_id}", e.event_type, json.loads(e.payload), e.hash
        )
        for e in events
    ]
