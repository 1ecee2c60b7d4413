"""A decision prepared before its write, so that the write is left only its writes.

On SQLite every writer waits for the one that holds the lock (review/db.py WriterLock),
so what a decision does while holding it is what every other decision, batch start and
intake waits. As intake does (review/intake/deferrals.py), the common decision (undo
off, one approval ends it, no canary) is prepared first, without a transaction: the
deferral read and checked (held by the reviewer under a live lease, not expired,
separation of duties), the receipt signed, the audit event built and hashed up to its
link, the callback's body and the ending's UPDATE bound. Under the lock are left the
lease renewal, the approval's row, the conditional UPDATE, the callback's row and the
event's append: one transaction, as before. On PostgreSQL the same writes are one call
of a function in the server (review/reviewing/decision_call.py, migration 0027), and
the read one statement without a transaction or the pool's ping.

The conditional UPDATE re-checks everything the preparation relied on that another
writer may have changed since (status, holder, live lease, and the action, quorum, risk
level and policy an edit changes), so a race still loses cleanly: when it finds no row,
or the ending owes more than the agent's callback (an AAP instance or a notification to
tell), or a second approval slips past, nothing is written (rolled back) and `decide`
takes the full path (review/reviewing/decisions.py), which says why, or does all of it
in one transaction. Every other decision takes the full path from the start.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value

from review.agents import breakers
from review.audit.chain import append_placed, placed_events, take_head
from review.callbacks.outbox import decision_row
from review.callbacks.wakeups import note_deliver, note_ended
from review.db import Notes
from review.driver_statements import BoundStatement, driver
from review.models import Agent, Approval, Deferral, OutboxEvent
from review.observability.metrics import decider, note_decided
from review.reviewing import decision_call
from review.reviewing.claims import Holder
from review.reviewing.decision_checks import (
    RENEWAL,
    Decided,
    check_may_approve,
    renewal_values,
)
from review.reviewing.decision_writes import (
    decision_payload,
    fast_note,
    reading_payload,
)
from review.reviewing.ending import ENDING_BY_HOLDER, ending_values, terminal_values
from review.reviewing.patches import edit_evidence
from review.reviewing.reading import Reading, assess
from review.reviewing.receipts import issue_receipt
from review.services import Services


@dataclass(frozen=True)
class PreparedDecision:
    """What the write is left to do, all of it bound or built already: on SQLite the
    statements for the write lock, on PostgreSQL the one call's parameters."""

    deferral: Deferral  # as read, with the ending's values set (detached)
    outcome: str
    reading: Reading
    callback_id: str | None
    agent_slug: str
    rejection_limit: int
    # SQLite:
    renewal: BoundStatement | None = None  # the lease on the reviewer's batch (renew_lease's)
    ending: BoundStatement | None = None
    approval: BoundStatement | None = None
    callback: BoundStatement | None = None
    events: list[dict[str, Any]] | None = None  # placed (review/audit/chain.py placed_events)
    # PostgreSQL: countersign_decide's parameters (review/reviewing/decision_call.py)
    call: dict[str, Any] | None = None


class TakeTheFullPath(Exception):
    """The prepared decision cannot be applied as prepared: roll back, decide in full."""


def prepare(
    svc: Services,
    holder: Holder,
    deferral_id: str,
    verdict: str,
    reason: str | None,
    now: datetime,
    seen_ms: int | None,
) -> PreparedDecision | None:
    """The decision prepared, or None when it is not the common kind (or the checks find
    something the full path must answer: it reads again under the lock and says what).
    DecisionRefused for an approval of the reviewer's own deferral."""
    deferral = read_for_decision(svc, deferral_id)
    if deferral is None or not plainly_held(deferral, holder, now):
        return None
    agent = deferral.agent
    if verdict == "approve":
        check_may_approve(deferral, holder)
    reading = assess(seen_ms, deferral.claimed_at, now, svc.settings.min_read_seconds)
    return built(svc, holder, deferral, agent, verdict, reason, now, reading)


def read_for_decision(svc: Services, deferral_id: str) -> Deferral | None:
    """The deferral with its agent, as the ORM's get with its joined agent would load them,
    from one Core SELECT (on PostgreSQL without a transaction or the pool's ping). Both
    objects belong to no session: what the decision reads, checks, signs and shows."""
    row = svc.db.first_row_unpinged(_READ, {"id": deferral_id})
    if row is None:
        return None
    deferral = _detached(Deferral, _DEFERRAL_KEYS, row[: len(_DEFERRAL_KEYS)])
    agent = _detached(Agent, _AGENT_KEYS, row[len(_DEFERRAL_KEYS) :])
    set_committed_value(deferral, "agent", agent)
    return deferral


def _detached(model: Any, keys: tuple[str, ...], values: Any) -> Any:
    """An instance of `model` holding `values` as loaded (no change to flush), in no session:
    as the ORM's loader fills one, straight into its __dict__."""
    instance = model.__mapper__.class_manager.new_instance()
    instance.__dict__.update(zip(keys, values, strict=True))
    return instance


def built(
    svc: Services,
    holder: Holder,
    deferral: Deferral,
    agent: Agent,
    verdict: str,
    reason: str | None,
    now: datetime,
    reading: Reading,
    *,
    renews: bool = True,
    ending_statement: Any = ENDING_BY_HOLDER,
) -> PreparedDecision:
    """The decision on the checked `deferral` (as read, detached), signed, built and bound.
    Also for a held decision taking effect on SQLite (review/reviewing/prepared_effects.py),
    which renews no lease (`renews=False`) and ends on the claim alone (ENDING_ON_CLAIM)."""
    outcome = "approved" if verdict == "approve" else "rejected"
    decided_by = [holder.username]
    valid_until = receipt = None
    if outcome == "approved":
        valid_until = now + timedelta(seconds=svc.settings.approval_ttl)
        receipt = issue_receipt(svc.settings, deferral, decided_by, now, valid_until)
    payload = {
        "reason": reason,
        "decided_by": decided_by,
        **decision_payload(deferral, outcome, valid_until, receipt),
        **edit_evidence(svc.redactor, deferral),  # approved edited args: the patch
        **reading_payload(reading),
    }
    event = {
        "actor_kind": "user",
        "actor_id": holder.username,
        "event_type": f"deferral.{outcome}",
        "agent": agent.slug,
        "deferral_id": deferral.id,
        "payload": payload,
        "at": now,
    }
    approval = None
    if outcome == "approved":
        approval = {
            "deferral_id": deferral.id,
            "username": holder.username,
            "approved_at": now,
            "action_digest": deferral.action_digest,
        }
    values = terminal_values(
        outcome, now, reason, decided_by, valid_until, receipt.token if receipt else None
    )
    ending = ending_values(deferral, holder.id, now, values)
    for name, value in values.items():  # the row as the UPDATE leaves it: the answer shows it
        set_committed_value(deferral, name, value)
    set_committed_value(deferral, "execution", None)  # reported only once it is approved
    row = decision_row(deferral, now)
    engine = svc.db.engine
    events = placed_events(engine, [event])
    renewal = renewal_values(svc, holder, now)
    common = {
        "deferral": deferral,
        "outcome": outcome,
        "reading": reading,
        "callback_id": row["id"] if row else None,
        "agent_slug": agent.slug,
        "rejection_limit": breakers.rejection_limit(svc, agent),
    }
    if not svc.db.is_sqlite:  # PostgreSQL: one call (review/reviewing/decision_call.py)
        # countersign_decide renews the lease and ends on the holder's live lease; a held
        # decision taking effect (no renewal, on the claim) is countersign_take_effect's,
        # from the same parameters (review/reviewing/effect_call.py).
        assert renews == (ending_statement is ENDING_BY_HOLDER), "no one call for this kind"
        call = decision_call.call_params(
            holder_id=holder.id,
            now=now,
            lease_until=renewal["lease_until"],
            has_callback=bool(ending["has_callback"]),
            ending={**_prepared_for(deferral), **values},
            approval=approval,
            callback=row,
            events=events,
        )
        return PreparedDecision(**common, call=call)
    callback = None
    if row is not None:
        callback = driver.bind(engine, _INSERT_CALLBACK, {**row, **dict.fromkeys(_CALLBACK_UNSET)})
    return PreparedDecision(
        **common,
        renewal=driver.bind(engine, RENEWAL, renewal) if renews else None,
        ending=driver.bind(engine, ending_statement, ending),
        approval=driver.bind(engine, _INSERT_APPROVAL, approval) if approval else None,
        callback=callback,
        events=events,
    )


def _prepared_for(deferral: Deferral) -> dict[str, Any]:
    """The deferral's id and what an edit meanwhile changes, as the decision read them."""
    return {
        "id": deferral.id,
        "action_digest": deferral.action_digest,
        "required_approvals": deferral.required_approvals,
        "risk_level": deferral.risk_level,
        "policy_version": deferral.policy_version,
    }


def plainly_held(deferral: Deferral, holder: Holder, now: datetime) -> bool:
    """Held by `holder` under a live lease, not expired, one approval ends it, no canary:
    what held_for_decision checks, and the kinds prepared, whether taken at once or held
    for the undo window (review/reviewing/prepared_holds.py)."""
    return (
        deferral.status == "in_review"
        and deferral.claimed_by == holder.id
        and deferral.lease_expires_at is not None
        and deferral.lease_expires_at >= now
        and deferral.expires_at > now
        and deferral.required_approvals <= 1
        and not deferral.canary
    )


def apply(svc: Services, holder: Holder, prepared: PreparedDecision, now: datetime) -> Decided:
    """One transaction under the write lock: the lease renewal, the approval, the conditional
    UPDATE, the callback, the event. TakeTheFullPath (rolled back) when it loses a race.
    On PostgreSQL, one call of a function in the server does all of it."""
    if prepared.call is not None:
        return _applied_in_one_call(svc, prepared, now)
    with svc.db.write_core() as (conn, notes):  # no ORM session: its begin, commit and close cost
        renewed = {i: bool(w) for i, w in driver.execute_bound(conn, prepared.renewal)}
        write_decision(conn, notes, prepared, now)
    d_id = prepared.deferral.id
    return decided_answer(prepared, sum(1 for i, w in renewed.items() if i != d_id and not w))


def write_decision(
    conn: Connection, notes: Notes, prepared: PreparedDecision, now: datetime
) -> None:
    """SQLite, under the write lock: the approval, the conditional UPDATE, the callback and
    the event, and their after-commit notes. TakeTheFullPath when the UPDATE finds the
    deferral no longer as prepared, or the ending owes more than the agent's callback (the
    caller's transaction then rolls back). Also for a held decision taking effect
    (review/reviewing/prepared_effects.py)."""
    try:
        if prepared.approval is not None:
            driver.execute_bound(conn, prepared.approval)
    except IntegrityError:  # approved already, past the preparation's checks
        raise TakeTheFullPath from None
    owes = driver.execute_bound(conn, prepared.ending).fetchone()
    if owes is None or owes[0] is not None or owes[1]:  # lost, or owes more: in full
        raise TakeTheFullPath
    if prepared.callback is not None:
        driver.execute_bound(conn, prepared.callback)
    _note(notes, prepared, now)
    append_placed(conn, take_head(conn), prepared.events)


def _note(notes: Notes, prepared: PreparedDecision, now: datetime) -> None:
    """For the after-commit hooks: the callback to deliver, the deferral ended, the metric."""
    if prepared.callback_id is not None:
        note_deliver(notes, prepared.callback_id)
    note_ended(notes, prepared.deferral.id)
    note_decided(notes, prepared.outcome, decider("user"), prepared.deferral.created_at, now)


def _applied_in_one_call(svc: Services, prepared: PreparedDecision, now: datetime) -> Decided:
    """PostgreSQL: countersign_decide writes it all (review/reviewing/decision_call.py);
    TakeTheFullPath when it wrote nothing. Then the after-commit hooks, as write_core's."""
    return decided_answer(prepared, written_in_one_call(svc, prepared, now, decision_call.write))


def written_in_one_call(
    svc: Services,
    prepared: PreparedDecision,
    now: datetime,
    call: Callable[[Services, dict[str, Any]], int | None],
) -> int | None:
    """PostgreSQL: `call(svc, params)` writes the prepared decision in one server call
    (countersign_decide's, or countersign_take_effect's: review/reviewing/effect_call.py);
    then the after-commit hooks, as write_core's. What the call answered; TakeTheFullPath
    when it wrote nothing."""
    try:
        answered = call(svc, prepared.call)
    except (decision_call.LostRace, IntegrityError):
        raise TakeTheFullPath from None
    notes = Notes()
    _note(notes, prepared, now)
    svc.db.run_after_commit(notes.info)
    return answered


def decided_answer(prepared: PreparedDecision, left: int | None = None) -> Decided:
    """The answer: the decision taken, and the items of the batch left to decide (None: a
    held decision taking effect, which answers no batch)."""
    word = "Approved" if prepared.outcome == "approved" else "Rejected"
    return Decided(
        prepared.deferral.id,
        prepared.outcome,
        f"{word}.{fast_note(prepared.reading)}",
        agent_slug=prepared.agent_slug,
        rejection_limit=prepared.rejection_limit,
        fast=not prepared.reading.read,
        deferral=prepared.deferral,
        left=left,
    )


def _column_keys(model: Any) -> tuple[tuple[str, ...], list[Any]]:
    """A model's attribute names and their columns, in one order."""
    attrs = model.__mapper__.column_attrs
    return tuple(a.key for a in attrs), [a.columns[0] for a in attrs]


_DEFERRAL_KEYS, _deferral_columns = _column_keys(Deferral)
_AGENT_KEYS, _agent_columns = _column_keys(Agent)
_READ = (
    select(*_deferral_columns, *(c.label(f"agent_{c.key}") for c in _agent_columns))
    .join_from(Deferral.__table__, Agent.__table__, Agent.id == Deferral.agent_id)
    .where(Deferral.id == bindparam("id"))
)
_INSERT_APPROVAL = insert(Approval.__table__)
_INSERT_CALLBACK = insert(OutboxEvent.__table__)
_CALLBACK_UNSET = ("last_status_code", "last_error", "finished_at")
