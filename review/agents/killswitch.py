"""The kill switch (PROTOCOL.md 4.5): an agent's owners and the admins stop it, at once.

A flip is one transaction that holds the audit chain's lock from its first statement
(review/audit/chain.py, lock_chain). In it: the agent's state changes (a conditional update:
flipping to the state it is already in changes nothing), every `pending` and
`in_review` deferral of the agent ends as `killed` (one UPDATE ... RETURNING), each
with its callback and audit event, and the agent's own `agent.killed` callback and
event are written. Intake re-reads the state under the same lock, so from the commit
on it answers 423, and no deferral is left undecided behind the flip. A reviewer
deciding at the same moment either commits first (the kill then finds the item
decided) or finds it killed.

After the commit the status the agent polls is rewritten in Redis (review/callbacks/wakeups.py)
and the waiting long-polls and callbacks are woken.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from review.agents.registry import find_agent, may_operate
from review.audit.chain import chained_write, record_event, record_events
from review.callbacks import outbox
from review.callbacks.wakeups import note_agent_changed, note_agent_status, note_ended
from review.errors import DomainError
from review.models import PENDING_STATUSES, Agent, Deferral, User, utcnow
from review.notifications import kinds
from review.notifications import outbox as notification_outbox
from review.observability.metrics import SYSTEM, note_decided
from review.resources import agent_status
from review.reviewing.ending import terminal_values
from review.services import Services

MAX_REASON = 2000
CHUNK = 500


class NotAllowed(DomainError):
    """The person may not flip this agent's switch (only its owners and admins may)."""


@dataclass(frozen=True)
class Actor:
    kind: str  # "user" or "system"
    name: str  # a username, or "breaker"

    @property
    def label(self) -> str:
        """How the agent's status names who flipped it."""
        return self.name if self.kind == "user" else f"system:{self.name}"


@dataclass(frozen=True)
class Flip:
    slug: str
    changed: bool  # False when the agent already was in that state
    ended: int  # deferrals ended as killed


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise DomainError("Say why: a reason is required.")
    if len(reason) > MAX_REASON:
        raise DomainError(f"Keep the reason under {MAX_REASON} characters.")
    return reason


def authorise(svc: Services, slug: str, username: str, action: str) -> Actor:
    """The user as an Actor if they own the agent or are an admin; else audit and refuse."""
    with svc.db.read() as session:
        agent = find_agent(session, slug)
        user = session.scalar(select(User).where(User.username == username))
        if agent is None:
            raise DomainError(f"There is no agent {slug!r}.")
        allowed = (
            user is not None and user.is_active and may_operate(session, agent, user.id, user.role)
        )
    if allowed:
        return Actor("user", username)
    with chained_write(svc.db) as session:
        record_event(
            session,
            actor_kind="user",
            actor_id=username,
            event_type="agent.flip_refused",
            agent=slug,
            payload={"action": action, "why": "not an owner of the agent or an admin"},
        )
    raise NotAllowed(f"{username} may not {action} {slug}: only its owners and admins may.")


def kill(
    svc: Services,
    slug: str,
    actor: Actor,
    reason: str,
    *,
    extra_events: list[dict[str, Any]] | None = None,
    now: datetime | None = None,
) -> Flip:
    """Stop the agent: intake refuses, its undecided deferrals end as killed, it is told."""
    reason = _reason(reason)
    now = now or utcnow()
    with chained_write(svc.db) as session:
        agent = _existing(session, slug)
        flip = _kill_in(session, agent, actor, reason, now, extra_events=extra_events)
    return flip


def _kill_in(
    session: Session,
    agent: Agent,
    actor: Actor,
    reason: str,
    now: datetime,
    *,
    scope: str | None = None,
    extra_events: list[dict[str, Any]] | None = None,
) -> Flip:
    if not _switch(session, agent, "active", "killed", actor, reason, now):
        return Flip(agent.slug, False, 0)
    table = Deferral.__table__
    ended_ids = list(
        session.execute(
            update(table)
            .where(table.c.agent_id == agent.id, table.c.status.in_(PENDING_STATUSES))
            .values(**terminal_values("killed", now, reason, decided_by=[]))
            .returning(table.c.id)
        ).scalars()
    )
    events = list(extra_events or [])
    for start in range(0, len(ended_ids), CHUNK):
        chunk = ended_ids[start : start + CHUNK]
        deferrals = session.scalars(select(Deferral).where(Deferral.id.in_(chunk))).all()
        outbox.add_decisions(session, deferrals, now)
        for deferral in deferrals:
            note_ended(session, deferral.id)
            note_decided(session, "killed", SYSTEM, deferral.created_at, now)
            events.append(
                _event(
                    actor,
                    "deferral.killed",
                    agent.slug,
                    {"reason": reason, "decided_by": [], "by": actor.label},
                    now,
                    deferral_id=deferral.id,
                )
            )
    status = agent_status(agent)
    events.append(
        _event(
            actor,
            "agent.killed",
            agent.slug,
            {
                "reason": reason,
                "by": actor.label,
                "deferrals_ended": len(ended_ids),
                "scope": scope,
            },
            now,
        )
    )
    record_events(session, events)
    outbox.add_agent_event(session, agent, "agent.killed", status, now)
    notification_outbox.add_agent_flip(
        session,
        agent,
        kinds.AGENT_KILLED,
        reason=reason,
        by=actor.label,
        now=now,
        deferrals_ended=len(ended_ids),
    )
    note_agent_status(session, agent.slug, json.dumps(status))
    return Flip(agent.slug, True, len(ended_ids))


def _switch(
    session: Session,
    agent: Agent,
    from_state: str,
    to_state: str,
    actor: Actor,
    reason: str,
    now: datetime,
) -> bool:
    """Flip the agent's state if it is `from_state` (a deactivated agent never comes back)."""
    conditions = [Agent.id == agent.id, Agent.state == from_state]
    if to_state == "active":
        conditions.append(Agent.deactivated_at.is_(None))
    changed = session.execute(
        update(Agent)
        .where(*conditions)
        .values(
            state=to_state,
            state_changed_at=now,
            state_changed_by=actor.label,
            state_reason=reason,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if changed == 1:
        session.refresh(agent)
    return changed == 1


def revive(
    svc: Services, slug: str, actor: Actor, reason: str, now: datetime | None = None
) -> Flip:
    """Let the agent defer again; what was killed stays killed."""
    reason = _reason(reason)
    now = now or utcnow()
    with chained_write(svc.db) as session:
        agent = _existing(session, slug)
        return _revive_in(session, agent, actor, reason, now)


def _revive_in(
    session: Session,
    agent: Agent,
    actor: Actor,
    reason: str,
    now: datetime,
    *,
    scope: str | None = None,
) -> Flip:
    if not _switch(session, agent, "killed", "active", actor, reason, now):
        return Flip(agent.slug, False, 0)
    status = agent_status(agent)
    record_events(
        session,
        [
            _event(
                actor,
                "agent.revived",
                agent.slug,
                {"reason": reason, "by": actor.label, "scope": scope},
                now,
            )
        ],
    )
    outbox.add_agent_event(session, agent, "agent.revived", status, now)
    notification_outbox.add_agent_flip(
        session, agent, kinds.AGENT_REVIVED, reason=reason, by=actor.label, now=now
    )
    note_agent_status(session, agent.slug, json.dumps(status), reset_breakers=True)
    return Flip(agent.slug, True, 0)


def stop_all(svc: Services, actor: Actor, reason: str, now: datetime | None = None) -> list[Flip]:
    """An incident: every active agent stops, in one transaction, audited as one action."""
    return _flip_all(svc, actor, reason, "active", "agents.stop_all", now)


def revive_all(svc: Services, actor: Actor, reason: str, now: datetime | None = None) -> list[Flip]:
    """After the incident: every killed (and not deactivated) agent may defer again."""
    return _flip_all(svc, actor, reason, "killed", "agents.revive_all", now)


def _flip_all(
    svc: Services,
    actor: Actor,
    reason: str,
    from_state: str,
    event_type: str,
    now: datetime | None,
) -> list[Flip]:
    """Every (not deactivated) agent in `from_state` flips; one event names them all."""
    reason = _reason(reason)
    now = now or utcnow()
    flip_one, scope = (
        (_kill_in, "stop-all") if from_state == "active" else (_revive_in, "revive-all")
    )
    with chained_write(svc.db) as session:
        agents = session.scalars(
            select(Agent)
            .where(Agent.state == from_state, Agent.deactivated_at.is_(None))
            .order_by(Agent.slug)
        ).all()
        flips = [flip_one(session, agent, actor, reason, now, scope=scope) for agent in agents]
        payload: dict[str, Any] = {
            "reason": reason,
            "by": actor.label,
            "agents": [f.slug for f in flips if f.changed],
        }
        if from_state == "active":
            payload["deferrals_ended"] = sum(f.ended for f in flips)
        record_events(session, [_event(actor, event_type, None, payload, now)])
    return flips


def deactivate(svc: Services, slug: str, actor: Actor, reason: str) -> Flip:
    """Retire an agent for good: it is killed (if it was not) and its secrets stop working.

    The agent and its history stay for the record; it cannot be revived.
    """
    reason = _reason(reason)
    now = utcnow()
    with chained_write(svc.db) as session:
        agent = _existing(session, slug)
        if agent.deactivated_at is not None:
            return Flip(slug, False, 0)
        flip = _kill_in(session, agent, actor, reason, now, scope="deactivate")
        agent.deactivated_at = now
        note_agent_changed(session, slug)  # its secrets stop verifying in every process
        record_events(
            session,
            [_event(actor, "agent.deactivated", slug, {"reason": reason, "by": actor.label}, now)],
        )
    return Flip(slug, True, flip.ended)


def _existing(session: Session, slug: str) -> Agent:
    agent = find_agent(session, slug)
    if agent is None:
        raise DomainError(f"There is no agent {slug!r}.")
    return agent


def _event(
    actor: Actor,
    event_type: str,
    slug: str | None,
    payload: dict[str, Any],
    at: datetime,
    deferral_id: str | None = None,
) -> dict[str, Any]:
    return {
        "actor_kind": actor.kind,
        "actor_id": actor.name,
        "event_type": event_type,
        "agent": slug,
        "deferral_id": deferral_id,
        "payload": payload,
        "at": at,
    }
