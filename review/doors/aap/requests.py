"""AAP requests as deferrals: create, read (long-poll), cancel, consume, report the outcome.

An AAP request is a deferral like any other: intake (`receive_deferral`: the agent's
rate, flood breaker, kill switch, pending cap, policy), the queue, the reviewers, expiry,
the audit chain. The door adds a row per request (tables.AapRequest): the submission as
sent, and the approval's consumption.

- **Create**: the Idempotency-Key, scoped to the credential (the agent's own token, or
  one instance), is the deferral's webhook-id (`aap:agent:KEY` or `aap:INSTANCE:KEY`), so
  intake's idempotency holds: the same submission again answers the same request (200),
  a different one 409 `idempotency_conflict` (the submission's own hash decides, so a
  changed `context` conflicts too). The submission row is written just after the
  deferral, in its own transaction; should the process die in between, the client's
  retry (the same key, as AAP clients do on any failure) writes it.
- **Consume**: the single-use claim of an approval, before the call runs: a conditional
  UPDATE (`consumed_at IS NULL`) with its audit event, under the chain lock. The same
  consume key again answers as before; another key: 409 `already_consumed`.
- **Outcome**: the execution report (review/agents/executions.py) of a consumed
  approval, judged at the moment it was consumed: accepted after `valid_until` when the
  run began before it. One report; the same one again answers 200, another 409.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from review.agents.executions import report_execution
from review.agents.registry import Signer
from review.audit.chain import chained_write, record_event
from review.callbacks.long_poll import long_poll_place, wait_until_ended
from review.errors import IdempotencyConflict, InvalidState, NotFound
from review.intake.deferrals import agent_killed
from review.intake.preparation import action_digest
from review.intake.receive import receive_deferral
from review.models import TERMINAL_STATUSES, Deferral, Execution, utcnow
from review.reviewing.ending import cancel_deferral
from review.services import Services

from . import notifications
from .errors import AapRefused
from .tables import AapInstance, AapRequest
from .tokens import Credential
from .wire import Submission, aap_status, deferral_id, request_resource

MAX_KEY = 200
OUTCOME_WEBHOOK_ID = "aap:outcome"  # the execution report's webhook-id: one per deferral
CANCEL_REASON = "withdrawn by its AAP client"
KEY_REUSED = "this Idempotency-Key was already used for a different request"


@dataclass(frozen=True)
class Answered:
    text: str  # the request resource, JSON
    created: bool = False


def check_key(key: str | None) -> str:
    if not key:
        raise AapRefused(
            "missing_idempotency_key", "send an Idempotency-Key header", param="Idempotency-Key"
        )
    if len(key) > MAX_KEY or not key.isprintable():
        raise AapRefused(
            "invalid_request",
            f"the Idempotency-Key must be 1 to {MAX_KEY} printable characters",
            param="Idempotency-Key",
        )
    return key


def webhook_id(credential: Credential, key: str) -> str:
    """The deferral's webhook-id: keys are scoped to the credential that sent them."""
    return f"aap:{credential.instance_id or 'agent'}:{key}"


def signer_of(svc: Services, credential: Credential) -> Signer:
    with svc.db.read() as session:
        signer = svc.secrets.signer(session, credential.slug)
    if signer is None:  # deactivated since the token was read
        raise NotFound("no such agent")
    return signer


# --- create ---------------------------------------------------------------------------


def submit(svc: Services, credential: Credential, key: str, submission: Submission) -> Answered:
    """Create the request (201), or answer the one this key created (200)."""
    key = check_key(key)
    signer = signer_of(svc, credential)
    instance_name = None
    if credential.instance_id is not None:
        with svc.db.read() as session:
            instance_name = session.get(AapInstance, credential.instance_id).name
    body = submission.deferral_request(credential.slug, instance_name)
    try:
        received = receive_deferral(svc, signer, webhook_id(credential, key), lambda: body)
    except IdempotencyConflict:
        raise IdempotencyConflict(KEY_REUSED) from None
    text = _store(svc, received.deferral.id, credential, key, submission)
    return Answered(text, created=received.created)


def _store(
    svc: Services, d_id: str, credential: Credential, key: str, submission: Submission
) -> str:
    """Keep the submission beside its deferral (once); a retry with another body: 409."""
    now = utcnow()
    with chained_write(svc.db) as session:  # in one order with decisions (see below)
        row = session.get(AapRequest, d_id)
        if row is None:
            f = submission.fields
            row = AapRequest(
                deferral_id=d_id,
                instance_id=credential.instance_id,
                idempotency_key=key,
                submission=submission.text,
                submission_hash=submission.hash,
                action_digest=action_digest({"tool": f["tool"], "args": f["arguments"]}),
                created_at=now,
            )
            session.add(row)
            session.flush()
            # A decision that landed before this row could not notify the instance:
            # under the chain lock, either it sees the row or this sees its decision.
            deferral = session.get(Deferral, d_id)
            if deferral.status in TERMINAL_STATUSES and not notifications.has_resolved(
                session, d_id
            ):
                notifications.add_resolved(session, deferral, now)
        elif row.submission_hash != submission.hash:
            raise IdempotencyConflict(KEY_REUSED)
        return _render(session, row)[0]


# --- read -----------------------------------------------------------------------------


def _own(svc: Services, credential: Credential, request_id: str) -> str:
    """The deferral id of a request this credential made; NotFound for any other."""
    d_id = deferral_id(request_id)
    if d_id is not None:
        with svc.db.read() as session:
            row = session.get(AapRequest, d_id)
            if row is not None and row.instance_id == credential.instance_id:
                owner = session.get(Deferral, d_id).agent_id
                if owner == credential.agent_id:
                    return d_id
    raise NotFound("no such request")


def _render(session: Session, row: AapRequest) -> tuple[str, bool]:
    """The resource as JSON text, and whether the request has ended."""
    deferral = session.get(Deferral, row.deferral_id)
    execution = None
    if row.consumed_at is not None:
        execution = session.get(Execution, row.deferral_id)
    text = request_resource(deferral, row.submission, row.action_digest, row.consumed_at, execution)
    return text, deferral.status in TERMINAL_STATUSES


def _read_now(svc: Services, d_id: str) -> tuple[bool, str]:
    with svc.db.read() as session:
        text, ended = _render(session, session.get(AapRequest, d_id))
    return ended, text


def read(
    svc: Services,
    credential: Credential,
    request_id: str,
    wait_seconds: int = 0,
    client_gone: Callable[[], bool] = lambda: False,
) -> str:
    """The request; with `wait_seconds`, once it has ended or the time is up (no database
    connection held meanwhile: review/callbacks/long_poll.py)."""
    d_id = _own(svc, credential, request_id)
    ended, text = _read_now(svc, d_id)
    if ended or wait_seconds <= 0:
        return text
    with long_poll_place(svc, credential.slug, wait_seconds):
        return wait_until_ended(
            svc.waiters, d_id, wait_seconds, lambda: _read_now(svc, d_id), client_gone
        )


# --- cancel ---------------------------------------------------------------------------


def cancel(svc: Services, credential: Credential, request_id: str) -> str:
    """Withdraw a pending request (again: the same cancelled request); 409 once decided."""
    d_id = _own(svc, credential, request_id)
    try:
        cancel_deferral(svc, d_id, signer_of(svc, credential), CANCEL_REASON)
    except InvalidState:
        pass  # ended already: cancelled before (answered as now), or decided (409 below)
    with svc.db.read() as session:
        row = session.get(AapRequest, d_id)
        status = aap_status(session.get(Deferral, d_id), row.action_digest)
        text = _render(session, row)[0]
    if status != "cancelled":
        raise AapRefused("already_terminal", f"the request is already {status}")
    return text


# --- consume --------------------------------------------------------------------------


def consume(
    svc: Services, credential: Credential, request_id: str, key: str, now: datetime | None = None
) -> str:
    """Claim the approval for the one run it permits, before the call starts."""
    key = check_key(key)
    d_id = _own(svc, credential, request_id)
    now = now or utcnow()
    with chained_write(svc.db) as session:
        row = session.get(AapRequest, d_id)
        deferral = session.get(Deferral, d_id)
        if row.consume_key != key:
            _may_consume(row, deferral, now)
            table = AapRequest.__table__
            done = session.execute(
                update(table)
                .where(table.c.deferral_id == d_id, table.c.consumed_at.is_(None))
                .values(consumed_at=now, consume_key=key)
            ).rowcount
            if done != 1:
                raise AapRefused("already_consumed", "this approval was already used")
            session.expire(row)
            record_event(
                session,
                actor_kind="agent",
                actor_id=credential.slug,
                event_type="deferral.consumed",
                agent=credential.slug,
                deferral_id=d_id,
                payload={
                    "consume_key": key,
                    "instance_id": credential.instance_id,
                    "action_digest": deferral.action_digest,
                    "valid_until": deferral.valid_until.isoformat(),
                },
                at=now,
            )
        return _render(session, row)[0]


def _may_consume(row: AapRequest, deferral: Deferral, now: datetime) -> None:
    if row.consumed_at is not None:
        raise AapRefused("already_consumed", "this approval was already used")
    status = aap_status(deferral, row.action_digest)
    if status != "approved":
        raise AapRefused("not_approved", f"the request is {status}, not approved")
    if deferral.valid_until is None or deferral.valid_until <= now:
        raise AapRefused("approval_expired", "the approval's time to start the call has passed")
    if deferral.agent.state == "killed":
        raise agent_killed(deferral.agent.slug, deferral.agent.state_reason)


# --- outcome --------------------------------------------------------------------------


def report_outcome(
    svc: Services, credential: Credential, request_id: str, status: str, note: str | None
) -> str:
    """Record what came of the consumed approval's run (PROTOCOL.md 4.4, AAP's timing)."""
    d_id = _own(svc, credential, request_id)
    with svc.db.read() as session:
        row = session.get(AapRequest, d_id)
        consumed_at, digest = row.consumed_at, session.get(Deferral, d_id).action_digest
        recorded = session.get(Execution, d_id)
        if recorded is not None and (recorded.outcome, _note(recorded)) == (status, note):
            return _render(session, row)[0]  # the same report again
    if consumed_at is None:
        raise AapRefused("not_consumed", "consume the approval before reporting an outcome")
    report = {"outcome": status, "action_digest": digest}
    if note:
        report["result"] = {"note": note}
    try:
        report_execution(
            svc,
            d_id,
            signer_of(svc, credential),
            report,
            OUTCOME_WEBHOOK_ID,
            started_at=consumed_at,
        )
    except InvalidState:
        if recorded is None:
            raise
        raise AapRefused("outcome_conflict", "a different outcome was already reported") from None
    return _read_now(svc, d_id)[1]


def _note(execution: Execution) -> str | None:
    result = execution.result
    return result.get("note") if isinstance(result, dict) else None
