"""A decision taken in Slack, through the same domain functions as the browser's.

A click on **Approve** (or a submitted rejection reason) is the browser's two steps:
`claim_one` (the claim rules: the queue's routing, separation of duties, an approval
already given, another reviewer's live lease) then `decide` (status, lease, expiry, the
quorum, separation of duties again, the receipt, the audit event and the
agent's callback in one transaction). Nothing here bypasses them; the only addition is
that a reviewer who already holds the deferral (claimed in their browser) decides it
without claiming it again. Refusals come back as sentences for the person in Slack.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from review.models import TERMINAL_STATUSES, Deferral, utcnow
from review.reviewing.claims import Holder, NotTakeable, claim_one
from review.reviewing.decisions import DecisionRefused, decide, ended_how
from review.services import Services

HELD_WORDS = {"approved": "Approved", "rejected": "Rejected", "pending": "Your approval counts"}


@dataclass(frozen=True)
class SlackDecision:
    done: bool  # the deferral changed (decided, or given an approval short of its quorum)
    message: str  # for the person who clicked
    # Held for COUNTERSIGN_UNDO_SECONDS (review/reviewing/undo.py): it takes effect then.
    effective_at: datetime | None = None


def decide_from_slack(
    svc: Services, holder: Holder, deferral_id: str, verdict: str, reason: str | None = None
) -> SlackDecision:
    """Claim (unless held already) and decide, as the browser does; refusals in words."""
    refused = _already_over(svc, deferral_id)
    if refused:
        return SlackDecision(False, refused)
    if not _holds(svc, holder, deferral_id):
        try:
            claim_one(svc, holder, deferral_id)
        except NotTakeable as exc:
            return SlackDecision(False, _after_refusal(svc, deferral_id, exc.message))
    try:
        decided = decide(svc, holder, deferral_id, verdict, reason)
    except DecisionRefused as exc:
        return SlackDecision(False, _after_refusal(svc, deferral_id, exc.message))
    if decided.status == "expired" or decided.canary:  # a canary tells what it was
        return SlackDecision(True, decided.message)
    if decided.effective_at is not None:  # held for its undo window, as the browser's are
        seconds = max(0, math.ceil((decided.effective_at - utcnow()).total_seconds()))
        word = HELD_WORDS.get(decided.status, "Decided")  # pending: short of its quorum
        return SlackDecision(
            True, f"{word}: it takes effect in {seconds} s.", effective_at=decided.effective_at
        )
    if decided.status == "pending":  # an approval short of the quorum (docs/ROUTING.md)
        return SlackDecision(True, f"Your approval counts: {decided.message}")
    word = "Approved" if decided.status == "approved" else "Rejected"
    return SlackDecision(True, f"{word}. The agent is told.")


def _already_over(svc: Services, deferral_id: str) -> str | None:
    with svc.db.read() as session:
        deferral = session.get(Deferral, deferral_id)
        if deferral is None:
            return "Countersign has no such deferral."
        if deferral.status in TERMINAL_STATUSES:
            return f"Already decided: {ended_how(deferral)}."
    return None


def _holds(svc: Services, holder: Holder, deferral_id: str) -> bool:
    with svc.db.read() as session:
        deferral = session.get(Deferral, deferral_id)
        return bool(
            deferral is not None
            and deferral.status == "in_review"
            and deferral.claimed_by == holder.id
            and deferral.lease_expires_at is not None
            and deferral.lease_expires_at >= utcnow()
        )


def _after_refusal(svc: Services, deferral_id: str, message: str) -> str:
    """A refusal, said as "Already decided: ..." when someone ended it meanwhile."""
    return _already_over(svc, deferral_id) or message
