"""Reviewers' decisions: approve or reject a held deferral, alone or several at once.

Each decision is one transaction under the audit chain's lock: checks (status, holder,
live lease, expiry, separation of duties, the two-person rule), then the conditional
UPDATE of review/reviewing/ending.py and its audit event and callback. An approval is
signed in the same transaction (review/reviewing/receipts.py): its receipt is stored
with it, so the resource and the callback carry it, and its claims go into the event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from review.agents import breakers
from review.audit.chain import chained_write, record_event
from review.errors import DomainError
from review.identity import identity_key
from review.models import TERMINAL_STATUSES, Deferral, utcnow
from review.resources import rfc3339
from review.reviewing.claims import Holder, two_person_levels
from review.reviewing.ending import AlreadyDecided, end_deferral, expire
from review.reviewing.patches import edit_evidence
from review.reviewing.receipts import Receipt, issue_receipt
from review.services import Services

MAX_REASON = 2000


class DecisionRefused(DomainError):
    """The decision cannot be taken; the message tells the reviewer why and what now."""


@dataclass(frozen=True)
class Decided:
    deferral_id: str
    status: str  # the deferral's status afterwards
    message: str
    agent_slug: str = ""
    rejection_limit: int = 0  # the agent's rejection breaker (0: off)


def _who(deferral: Deferral) -> str:
    names = ", ".join(deferral.decided_by or []) or "the system"
    return f"{deferral.status} by {names}"


def decide(
    svc: Services,
    holder: Holder,
    deferral_id: str,
    verdict: str,
    reason: str | None = None,
    now: datetime | None = None,
) -> Decided:
    """Approve or reject a deferral the reviewer holds, in one audited transaction.

    After it commits, the decision counts towards the agent's rejection breaker.
    """
    decided = _decide(svc, holder, deferral_id, verdict, reason, now)
    if decided.agent_slug:
        breakers.after_decision(svc, decided.agent_slug, decided.status, decided.rejection_limit)
    return decided


def _decide(
    svc: Services,
    holder: Holder,
    deferral_id: str,
    verdict: str,
    reason: str | None,
    now: datetime | None,
) -> Decided:
    if verdict not in ("approve", "reject"):
        raise ValueError(verdict)
    now = now or utcnow()
    reason = (reason or "").strip() or None
    if verdict == "reject" and not reason:
        raise DecisionRefused("Say why you reject it: pick a reason or type one.")
    if reason and len(reason) > MAX_REASON:
        raise DecisionRefused(f"Keep the reason under {MAX_REASON} characters.")
    with chained_write(svc.db) as session:
        deferral = session.get(Deferral, deferral_id)
        if deferral is None:
            raise DecisionRefused("There is no such deferral.")
        if deferral.status in TERMINAL_STATUSES:
            raise DecisionRefused(f"Nothing changed: it was already {_who(deferral)}.")
        if deferral.expires_at <= now:
            expire(session, deferral, now)
            return Decided(
                deferral.id,
                "expired",
                "It expired before your decision and was denied; nothing was approved.",
            )
        if (
            deferral.status != "in_review"
            or deferral.claimed_by != holder.id
            or deferral.lease_expires_at is None
            or deferral.lease_expires_at < now
        ):
            raise DecisionRefused(
                "Nothing changed: your claim on this item lapsed, so it went back to the queue "
                "(another reviewer may hold it now). Start a new batch to see it again."
            )
        _renew_lease(session, svc, holder, now)
        if verdict == "reject":
            return _end(svc, session, deferral, holder, "rejected", reason, now)
        if identity_key(deferral.principal_id) in holder.identity_keys:
            raise DecisionRefused("You cannot approve a deferral made on your own behalf.")
        if deferral.risk_level in two_person_levels(svc.settings.two_person_level):
            if deferral.first_approved_by is None:
                return _first_of_two(session, deferral, holder, reason, now)
            if deferral.first_approved_by == holder.username:
                raise DecisionRefused("The second approval must come from another reviewer.")
        return _end(
            svc,
            session,
            deferral,
            holder,
            "approved",
            reason,
            now,
            valid_until=now + timedelta(seconds=svc.settings.approval_ttl),
        )


def _renew_lease(session: Session, svc: Services, holder: Holder, now: datetime) -> None:
    """Working on a batch keeps the rest of it: every decision renews the lease."""
    table = Deferral.__table__
    session.execute(
        update(table)
        .where(
            table.c.claimed_by == holder.id,
            table.c.status == "in_review",
            table.c.lease_expires_at >= now,
        )
        .values(lease_expires_at=now + timedelta(seconds=svc.settings.lease_seconds))
    )


def _end(
    svc: Services,
    session: Session,
    deferral: Deferral,
    holder: Holder,
    outcome: str,
    reason: str | None,
    now: datetime,
    valid_until: datetime | None = None,
) -> Decided:
    approvers = (
        [deferral.first_approved_by] if outcome == "approved" and deferral.first_approved_by else []
    )
    decided_by = [*approvers, holder.username]
    receipt = None
    if outcome == "approved" and valid_until is not None:
        receipt = issue_receipt(svc.settings, deferral, decided_by, now, valid_until)
    try:
        end_deferral(
            session,
            deferral,
            outcome,
            actor=("user", holder.username),
            reason=reason,
            decided_by=decided_by,
            from_statuses=("in_review",),
            claimed_by=holder.id,
            valid_until=valid_until,
            receipt=receipt.token if receipt else None,
            now=now,
            payload={
                **_decision_payload(deferral, outcome, valid_until, receipt),
                **edit_evidence(svc.redactor, deferral),  # approved edited args: the patch
            },
        )
    except AlreadyDecided:
        raise DecisionRefused("Nothing changed: someone else decided it first.") from None
    word = "Approved" if outcome == "approved" else "Rejected"
    return Decided(
        deferral.id,
        outcome,
        f"{word}.",
        agent_slug=deferral.agent.slug,
        rejection_limit=breakers.rejection_limit(svc, deferral.agent),
    )


def _decision_payload(
    deferral: Deferral, outcome: str, valid_until: datetime | None, receipt: Receipt | None
) -> dict[str, object]:
    """What the decision's audit event adds: an approval says until when it may run, and
    the claims of the receipt it was given (signed with the key `receipt_kid`)."""
    payload: dict[str, object] = {
        "risk_level": deferral.risk_level,
        "action_digest": deferral.action_digest,
    }
    if outcome == "approved":
        payload["valid_until"] = rfc3339(valid_until)
    if receipt is not None:
        payload["receipt"] = receipt.claims
        payload["receipt_kid"] = receipt.kid
    return payload


def _first_of_two(
    session: Session, deferral: Deferral, holder: Holder, reason: str | None, now: datetime
) -> Decided:
    table = Deferral.__table__
    done = session.execute(
        update(table)
        .where(
            table.c.id == deferral.id,
            table.c.status == "in_review",
            table.c.claimed_by == holder.id,
            table.c.first_approved_by.is_(None),
        )
        .values(
            status="pending",
            first_approved_by=holder.username,
            claimed_by=None,
            lease_expires_at=None,
            opened=False,
        )
    ).rowcount
    if done != 1:
        raise DecisionRefused("Nothing changed: someone else acted on it first.")
    record_event(
        session,
        actor_kind="user",
        actor_id=holder.username,
        event_type="deferral.approval_1_of_2",
        agent=deferral.agent.slug,
        deferral_id=deferral.id,
        payload={
            "reason": reason,
            "risk_level": deferral.risk_level,
            "action_digest": deferral.action_digest,
        },
        at=now,
    )
    return Decided(
        deferral.id, "pending", "1 of 2 approvals: it goes back to the queue for a second reviewer."
    )


@dataclass(frozen=True)
class BulkResult:
    done: list[Decided]
    skipped: list[tuple[str, str]]  # (deferral id, why)


def decide_many(
    svc: Services, holder: Holder, ids: list[str], verdict: str, reason: str | None = None
) -> BulkResult:
    """Approve or reject several held deferrals, each in its own audited transaction.

    Bulk approval takes only items the reviewer has opened, and none that needs two
    approvers: approving what nobody looked at is what this tool exists to prevent.
    Bulk rejection takes one reason for all.
    """
    done, skipped = [], []
    if verdict == "approve":
        with svc.db.read() as session:
            rows = {d.id: d for d in session.scalars(select(Deferral).where(Deferral.id.in_(ids)))}
        two_person = two_person_levels(svc.settings.two_person_level)
    for deferral_id in dict.fromkeys(ids):
        if verdict == "approve":
            d = rows.get(deferral_id)
            if d is not None and d.claimed_by == holder.id and not d.opened:
                skipped.append((deferral_id, "not opened yet"))
                continue
            if d is not None and d.risk_level in two_person:
                skipped.append((deferral_id, "needs two approvers: approve it on its own"))
                continue
        try:
            done.append(decide(svc, holder, deferral_id, verdict, reason))
        except DecisionRefused as refused:
            skipped.append((deferral_id, str(refused)))
    return BulkResult(done, skipped)
