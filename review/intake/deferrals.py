"""Intake: turn a validated deferral request into a scored, diffed, audited deferral.

Scoring and diffing happen before the transaction (they can take a few hundred ms on
a large diff and need no lock), and so do the new row's values, a policy decision and
the events, hashed up to their link to the chain: on SQLite every writer waits while one
holds the lock. Then the write, under the audit chain's head lock
(which serialises every state change in the service) and a lock on the agent's row:
read the agent's kill switch and undecided count, refuse a killed agent (423) or one at
its pending cap (429), insert the deferral with its `received` and `evaluated` events,
move the head. A deferral the policy allows or denies is inserted already decided, with
its decision event and its callback (review/intake/policy_decisions.py): the kill switch
and the pending cap refuse under the lock, before anything the policy decided is
written. On PostgreSQL that is one call of a function in the server (migrations 0008,
0013), its own transaction, so no network round trip holds the lock; on SQLite it is
three reads and the inserts, in-process statements in an IMMEDIATE transaction.

The kill switch and intake meet at that lock: a transaction that flips an agent's
state takes the chain lock before it changes anything. So an intake either commits
before the flip (and the flip's later statements see and end its deferral) or sees
the flip and is refused; a deferral is never created pending for a killed agent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from review.agents.registry import Signer
from review.audit.chain import (
    GuardedAgent,
    append_placed,
    placed_events,
    rows_json,
    take_head,
)
from review.db import Notes
from review.driver_statements import BoundStatement, driver
from review.errors import AgentKilled, DomainError, IdempotencyConflict, RateLimited
from review.intake import policy_decisions
from review.intake.deferral_rows import deferral_values, intake_events
from review.intake.preparation import Prepared, request_hash
from review.intake.principals import without_token
from review.models import Deferral, utcnow
from review.services import Services

PENDING_CAP_RETRY_AFTER = 30


@dataclass(frozen=True)
class Received:
    deferral: Deferral | SimpleNamespace  # the stored row, or a new one's values
    created: bool  # False: a retry of an earlier identical request
    agent_slug: str


def create_deferral(
    svc: Services, agent: Signer, webhook_id: str, prepared: Prepared, now: datetime | None = None
) -> Received:
    now = now or utcnow()
    # The row, a policy decision and the events, hashed up to their link, are computed
    # before the write: on SQLite every writer waits for the one that holds the lock,
    # so the lock covers only what needs the chain's head and the agent's row.
    values = deferral_values(svc, agent.id, webhook_id, prepared, now)
    decision = policy_decisions.decide_at_intake(svc, values, agent.slug, prepared.evaluation, now)
    events = intake_events(agent.slug, values, prepared)
    if decision:
        events.append(decision.event)
    try:
        if not svc.db.is_sqlite:
            return _create_in_one_call(svc, agent, webhook_id, prepared, values, decision, events)
        rows = placed_events(svc.db.engine, events)
        row = driver.bind(svc.db.engine, _INSERT_DEFERRAL, values)  # JSON encoded here
        # Its commit shared with the other intakes queued on the writer lock
        # (review/commit_groups.py): one fsync for the group, each in its own savepoint.
        outcome = svc.db.write_grouped(
            lambda conn, notes: _create(svc, conn, notes, agent.id, values, decision, rows, row)
        )
        if isinstance(outcome, DomainError):  # refused under the lock; a retry answers
            with svc.db.read() as session:
                return _retry_or_refuse(session, agent.id, webhook_id, prepared, outcome)
        return outcome
    except IntegrityError:
        # Two requests with one webhook-id raced past the lookup; the other one won.
        with svc.db.read() as session:
            existing = _existing(session, agent.id, webhook_id)
            if existing is None:
                raise
            return _replay(existing, prepared)


def _existing(session: Session, agent_id: int, webhook_id: str) -> Deferral | None:
    table = Deferral.__table__
    found = session.scalar(  # a Core probe first: on the hot path there is nothing to find
        select(table.c.id).where(table.c.agent_id == agent_id, table.c.webhook_id == webhook_id)
    )
    return None if found is None else session.get(Deferral, found)


def earlier_answer(svc: Services, agent_id: int, webhook_id: str, body: dict[str, Any]) -> Received:
    """The deferral a retry's webhook-id created, judged without verifying its token again.

    A principal's token may expire, or its issuer's keys be out of reach, between a
    request that was stored and its retry (the answer lost on the way back): the retry
    still answers with what was created. Raises IdempotencyConflict for another body
    under the same webhook-id, and LookupError when there was no earlier request.
    """
    with svc.db.read() as session:
        existing = _existing(session, agent_id, webhook_id)
        if existing is None:
            raise LookupError(webhook_id)
        if existing.request_hash != request_hash(without_token(body)):
            raise IdempotencyConflict("this webhook-id was already used with a different body")
        existing.execution  # noqa: B018  loaded now: the answer renders it after the session ends
        existing.approvals  # noqa: B018  likewise (its route's approvals so far)
        return Received(existing, created=False, agent_slug=existing.agent.slug)


def _replay(existing: Deferral, prepared: Prepared) -> Received:
    if existing.request_hash != prepared.request_hash:
        raise IdempotencyConflict("this webhook-id was already used with a different body")
    existing.execution  # noqa: B018  loaded now: the answer renders it after the session ends
    existing.approvals  # noqa: B018  likewise (its route's approvals so far)
    return Received(existing, created=False, agent_slug=existing.agent.slug)


def _retry_or_refuse(
    session: Session, agent_id: int, webhook_id: str, prepared: Prepared, refusal: DomainError
) -> Received:
    """A refused request that retries one accepted earlier answers as it did; others raise."""
    existing = _existing(session, agent_id, webhook_id)
    if existing is not None:
        return _replay(existing, prepared)
    raise refusal


def _create(
    svc: Services,
    conn: Connection,
    notes: Notes,
    agent_id: int,
    values: dict[str, Any],
    decision: policy_decisions.PolicyDecision | None,
    rows: list[dict[str, Any]],
    row: BoundStatement,
) -> Received | DomainError:
    """SQLite, holding the write lock: read the heads and the agent, refuse or write.

    A Core connection, not a session (review/db.py `write_core`): every statement runs
    on the driver, and the session's bookkeeping was Python spent holding the lock. A
    refusal is returned, and the retry it may be looked up after the lock is let go. A
    policy decision's callback is noted in `notes`: its delivery is woken after the commit."""
    head = take_head(conn, guard_agent=agent_id)
    agent = head.agent
    refusal = _refusal(svc, agent)
    if refusal is not None:
        return refusal
    # A duplicate webhook-id fails the insert on the unique constraint: create_deferral
    # then answers with the deferral that won (a retry) or 409 (a different body).
    append_placed(conn, head, rows, insert_first=row)
    if decision:
        policy_decisions.write_callback(conn, notes, decision)
    # The new row's values as attributes, to render the resource: building a transient
    # ORM instance (instrumenting every attribute) cost more than the rest of the answer.
    return Received(policy_decisions.rendered(values), created=True, agent_slug=agent.slug)


def _create_in_one_call(
    svc: Services,
    agent: Signer,
    webhook_id: str,
    prepared: Prepared,
    values: dict[str, Any],
    decision: policy_decisions.PolicyDecision | None,
    events: list[dict[str, Any]],
) -> Received:
    """PostgreSQL: countersign_intake (migration 0008) does _create's work in the server.

    One autocommit statement (`call_intake`): the chain lock is held for the function
    and its commit, never across a round trip. The events arrive hashed up to their link; a policy
    decision's callback row arrives with them (migration 0013).
    """
    params = {
        "agent": agent.id,
        "cap": svc.settings.agent_max_pending,
        "deferral": rows_json(values),
        "events": rows_json(placed_events(svc.db.engine, events)),
        "outbox": rows_json(decision.callback) if decision else None,
    }
    outcome, slug, reason, undecided = call_intake(svc, params)
    if outcome == "created":
        if decision:
            policy_decisions.wake_after_commit(svc, decision)
        return Received(policy_decisions.rendered(values), created=True, agent_slug=slug)
    state = "killed" if outcome == "killed" else "active"
    refusal = _refusal(svc, GuardedAgent(slug, state, reason, undecided))
    with svc.db.read() as session:
        return _retry_or_refuse(session, agent.id, webhook_id, prepared, refusal)


def call_intake(svc: Services, params: dict[str, Any]) -> tuple[str, str, str, int]:
    """The one call, on the driver (review/db.py `call_unpinged`): SQLAlchemy's execute
    cost as much Python as the rest of the write.

    On a pooled connection taken without the pool's ping (a round trip, and a wait for
    the GIL after it); one the server dropped fails the call, which runs again on a
    pinged connection. That is safe: the call is one statement in its own transaction,
    and if the first one committed before its answer was lost, the second fails on the
    webhook-id's unique key and create_deferral answers with the stored deferral."""
    return svc.db.call_unpinged(PG_INTAKE, params)


_INSERT_DEFERRAL = insert(Deferral.__table__)
PG_INTAKE = (  # psycopg's parameter style
    "SELECT outcome, slug, reason, undecided FROM countersign_intake(%(agent)s, %(cap)s,"
    " CAST(%(deferral)s AS jsonb), CAST(%(events)s AS jsonb), CAST(%(outbox)s AS jsonb))"
)


def agent_killed(slug: str, reason: str) -> AgentKilled:
    return AgentKilled(f"agent {slug} is stopped: {reason}")


def _refusal(svc: Services, agent: GuardedAgent) -> DomainError | None:
    """AgentKilled for a killed agent, RateLimited over the pending cap; None: go on.

    Both are read under the chain lock, which a kill takes first: a deferral is never
    created for a killed agent, and the cap is exact (`agents.undecided` is kept by
    the database, migration 0007).
    """
    if agent.state == "killed":
        return agent_killed(agent.slug, agent.state_reason)
    cap = svc.settings.agent_max_pending
    if cap and agent.undecided >= cap:
        return RateLimited(
            f"agent has {agent.undecided} undecided deferrals (cap {cap})",
            retry_after=PENDING_CAP_RETRY_AFTER,
        )
    return None
