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

import hashlib
import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import select, text
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
from review.audit.hashing import canonical_json
from review.errors import AgentKilled, DomainError, IdempotencyConflict, RateLimited
from review.groups import Group
from review.identity import identity_key
from review.ids import new_deferral_id
from review.intake import policy_decisions, policy_routes, policy_windows, priority
from review.intake.diffing import ABSENT, compute_diff
from review.intake.policy import Evaluation, Facts
from review.intake.principals import Principal, read_principal, verified_values, without_token
from review.models import Deferral, undecided_fields, utcnow
from review.services import Services

PENDING_CAP_RETRY_AFTER = 30


def action_digest(action: dict[str, Any]) -> str:
    """SHA-256 of the RFC 8785 canonical JSON of the action (PROTOCOL.md section 5)."""
    return "sha256:" + hashlib.sha256(canonical_json(action)).hexdigest()


def request_hash(body: dict[str, Any]) -> str:
    """Tells a retry (same JSON, however it was spaced or ordered) from a different request."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Prepared:
    """Everything computed from the request before touching the database."""

    body: dict[str, Any]
    request_hash: str
    digest: str
    diff: dict[str, Any]
    evaluation: Evaluation
    # The action and state as the audit log keeps them (configured paths redacted).
    audit_action: dict[str, Any]
    audit_state: dict[str, Any]
    principal: Principal
    audit_intent: Any  # the intent as the audit log keeps it (redactable: path `intent`)
    counters: list[policy_windows.Counter] = field(default_factory=list)  # added once stored
    # The reviewer group and quorum (review/intake/policy_routes.py); None: any, by level.
    routed: policy_routes.Routed | None = None


def prepare(svc: Services, body: dict[str, Any], agent_slug: str | None = None) -> Prepared:
    s = svc.settings
    # The principal first: a token that does not verify refuses the request before any
    # work, and the token leaves the body here, before it is hashed, stored or audited.
    principal = read_principal(
        svc.principal_keys,
        body["on_behalf_of"],
        audience=s.principal_audience,
        groups_claim=s.principal_groups_claim,
    )
    body = without_token(body)
    diff = compute_diff(
        body.get("before", ABSENT),
        body.get("after", ABSENT),
        max_changes=s.diff_max_changes,
        max_ms=s.diff_max_ms,
    )
    action = body["action"]
    facts = Facts(
        tool=action["tool"],
        args=action["args"],
        principal_id=body["on_behalf_of"]["id"],
        principal_verified=principal.verified,
        principal_groups=principal.groups,
        principal_identity=principal.identity,
        agent=agent_slug,
        labels=body.get("labels", {}),
        changed_paths=[c["path"] for c in diff["changes"]],
        change_count=diff["count"],
        agent_score=body.get("risk", {}).get("score"),
        changes=diff["changes"],
        diff_truncated=diff["truncated"],
    )
    # Context: the window rules' counts, one Redis round trip (review/intake/policy_windows.py).
    counters = policy_windows.counters_for(svc.policy, facts)
    if counters:
        facts = replace(facts, windows=policy_windows.read(svc, counters))
    redact = svc.redactor.apply
    evaluation = svc.policy.evaluate(facts)
    return Prepared(
        body,
        request_hash(body),
        action_digest(action),
        diff,
        evaluation,
        audit_action=redact("action", action),
        audit_state={k: redact(k, body[k]) for k in ("before", "after") if k in body},
        principal=principal,
        audit_intent=redact("intent", body["intent"]) if "intent" in body else None,
        counters=counters,
        routed=route_of(svc, evaluation),
    )


def route_of(svc: Services, ev: Evaluation) -> policy_routes.Routed:
    """The evaluation's route, with the group looked up (only when a rule names one)."""
    exists = True
    if ev.route.group is not None:
        with svc.db.read() as session:
            exists = (
                session.scalar(select(Group.name).where(Group.name == ev.route.group)) is not None
            )
    return policy_routes.resolve(ev.route, svc.settings.two_person_level, ev.level, exists)


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
    values = _deferral_values(svc, agent.id, webhook_id, prepared, now)
    decision = policy_decisions.decide_at_intake(svc, values, agent.slug, prepared.evaluation, now)
    events = _intake_events(agent.slug, values, prepared)
    if decision:
        events.append(decision.event)
    try:
        if not svc.db.is_sqlite:
            return _create_in_one_call(svc, agent, webhook_id, prepared, values, decision, events)
        rows = placed_events(svc.db.engine, events)
        with svc.db.write() as session:
            return _create(svc, session, agent.id, webhook_id, prepared, values, decision, rows)
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
    session: Session,
    agent_id: int,
    webhook_id: str,
    prepared: Prepared,
    values: dict[str, Any],
    decision: policy_decisions.PolicyDecision | None,
    rows: list[dict[str, Any]],
) -> Received:
    """SQLite, holding the write lock: read the heads and the agent, refuse or write, commit."""
    head = take_head(session, guard_agent=agent_id)
    agent = head.agent
    refusal = _refusal(svc, agent)
    if refusal is not None:
        return _retry_or_refuse(session, agent_id, webhook_id, prepared, refusal)
    # A duplicate webhook-id fails the insert on the unique constraint: create_deferral
    # then answers with the deferral that won (a retry) or 409 (a different body).
    append_placed(session, head, rows, insert_first=(Deferral.__table__, values))
    if decision:
        policy_decisions.write_callback(session, decision)
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

    One autocommit statement: the chain lock is held for the function and its commit,
    never across a round trip. The events arrive hashed up to their link; a policy
    decision's callback row arrives with them (migration 0013).
    """
    with svc.db.autocommit() as conn:
        outcome, slug, reason, undecided = conn.execute(
            _PG_INTAKE,
            {
                "agent": agent.id,
                "cap": svc.settings.agent_max_pending,
                "deferral": rows_json(values),
                "events": rows_json(placed_events(conn, events)),
                "outbox": rows_json(decision.callback) if decision else None,
            },
        ).one()
    if outcome == "created":
        if decision:
            policy_decisions.wake_after_commit(svc, decision)
        return Received(policy_decisions.rendered(values), created=True, agent_slug=slug)
    state = "killed" if outcome == "killed" else "active"
    refusal = _refusal(svc, GuardedAgent(slug, state, reason, undecided))
    with svc.db.read() as session:
        return _retry_or_refuse(session, agent.id, webhook_id, prepared, refusal)


_PG_INTAKE = text(
    "SELECT outcome, slug, reason, undecided FROM countersign_intake("
    ":agent, :cap, CAST(:deferral AS jsonb), CAST(:events AS jsonb), CAST(:outbox AS jsonb))"
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


def _deferral_values(
    svc: Services, agent_id: int, webhook_id: str, prepared: Prepared, now: datetime
) -> dict[str, Any]:
    """Every column of the new deferral's row: both paths insert exactly this dict.

    Adding a column to `deferrals` means changing, together:

    1. review/models.py `Deferral` (and `undecided_fields` there if it is a decision or
       review field that starts empty), and a new migration that adds the column.
    2. This dict. SQLite's insert refuses a row without the column (review/db.py
       `DriverStatements`), but PostgreSQL's intake function (migration 0008) fills the
       row with `jsonb_populate_record`, which gives a missing key NULL, not the
       column's default: an error on a NOT NULL column, silence on a nullable one. The
       function itself needs no change.
    3. `rows_json` (review/audit/chain.py) if the value is not a dict, list, str, int,
       float, bool, None or aware datetime: it must become JSON that PostgreSQL reads as
       the column's type.
    4. What shows it: review/resources.py renders a new deferral straight from this
       dict (`Received.deferral`), and PROTOCOL.md section 5 if agents see it; the
       `received` event's payload (`_intake_events`) if the audit log should keep it.
    5. tests/test_intake_function.py: a value in `EVERY_FIELD` if the request may omit
       it, so its read-back can tell a dropped value from a NULL one.
    """
    s = svc.settings
    body, ev = prepared.body, prepared.evaluation
    routed = prepared.routed or route_of(svc, ev)
    expires_at = now + timedelta(seconds=body.get("expires_in", s.default_expires_in))
    rank = priority.rank(
        ev.score,
        now,
        expires_at,
        default_expires_in=s.default_expires_in,
        age_seconds_per_point=s.priority_age_seconds_per_point,
        expiry_seconds_per_point=s.priority_expiry_seconds_per_point,
    )
    at_intake = priority.priority_at(
        now,
        rank,
        age_seconds_per_point=s.priority_age_seconds_per_point,
        expiry_seconds_per_point=s.priority_expiry_seconds_per_point,
    )
    return {
        "id": new_deferral_id(),
        "agent_id": agent_id,
        "webhook_id": webhook_id,
        "request_hash": prepared.request_hash,
        "status": "pending",
        "tool": body["action"]["tool"],
        "action": body["action"],
        "action_digest": prepared.digest,
        "summary": body["summary"],
        "principal_id": body["on_behalf_of"]["id"],
        # Separation of duties compares the verified identity when there is one.
        "principal_key": identity_key(prepared.principal.identity),
        "principal_name": body["on_behalf_of"].get("display_name"),
        "principal_verified": verified_values(prepared.principal),
        "intent": body.get("intent"),
        "rationale": body.get("rationale"),
        "state": {k: body[k] for k in ("before", "after") if k in body},
        "diff": prepared.diff,
        "resource_type": body.get("resource", {}).get("type"),
        "resource_id": body.get("resource", {}).get("id"),
        "labels": body.get("labels", {}),
        "trace_id": body.get("trace", {}).get("id"),
        "trace_url": body.get("trace", {}).get("url"),
        "risk_score": ev.score,
        "risk_level": ev.level,
        "risk_factors": ev.factors,
        "agent_risk": body.get("risk"),
        "policy_version": ev.policy_version,
        "policy_outcome": {"outcome": ev.outcome, "rule": ev.rule},
        "route_group": routed.group,
        "required_approvals": routed.required_approvals,
        "priority": priority.clamp_priority(at_intake),
        "rank": rank,
        "created_at": now,
        "expires_at": expires_at,
        "canary": None,  # an agent's request is never a canary (review/canaries/seeding.py)
        **undecided_fields(),
    }


def _intake_events(slug: str, v: dict[str, Any], prepared: Prepared) -> list[dict[str, Any]]:
    """`received` (the intent and the action, as the agent decided it) and `evaluated`."""
    body, ev = prepared.body, prepared.evaluation
    common = {
        "actor_kind": "agent",
        "actor_id": slug,
        "agent": slug,
        "deferral_id": v["id"],
        "at": v["created_at"],
    }
    received = {
        "webhook_id": v["webhook_id"],
        "on_behalf_of": prepared.principal.as_audit(),
        "intent": prepared.audit_intent,
        "summary": body["summary"],
        "rationale": body.get("rationale"),
        "action": prepared.audit_action,
        "action_digest": v["action_digest"],
        "resource": body.get("resource"),
        "trace": body.get("trace"),
        "labels": v["labels"],
        "state": prepared.audit_state,
        "expires_at": v["expires_at"].isoformat(),
    }
    evaluated = {
        **ev.as_risk(),
        "priority": v["priority"],
        "diff": {"count": prepared.diff["count"], "truncated": prepared.diff["truncated"]},
        "route": prepared.routed.audit if prepared.routed else None,
    }
    return [
        {**common, "event_type": "deferral.received", "payload": received},
        {**common, "event_type": "deferral.evaluated", "payload": evaluated},
    ]
