"""A reviewer's decision on a canary: recorded, closed, and told at once.

Called by review/reviewing/decisions.py (and edits.py) inside the decision's own
transaction, after every check a real decision passes (held, live lease, not expired),
so a canary is decided exactly when a real item would be. Then, instead of the real
ending:

- the deferral ends `rejected` whatever the verdict: a canary never ends approved, so
  no receipt is signed, nothing is valid for execution, and no reading of the
  deferrals table can take it for a permission. Its `decision_reason` says what the
  reviewer did; `decided_by` names them.
- no callback, no long-poll wake-up, no rejection-breaker count, no decision metric:
  nothing reaches or concerns the agent whose name it wore. The people and channels
  that were notified of it get the usual follow-up (its status, as for any decision).
- the audit event is `canary.caught` (rejected) or `canary.missed` (approved, edited
  and approved, or the first of two approvals), with the verdict, the reason and the
  time in view; `canaries` gets the outcome for the figures.

Any approval is a miss, the first of two included: the reviewer said yes to a
known-bad action, and a second reviewer should not have to be the safety net.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update

from review.audit.chain import record_event
from review.canaries.kinds import KINDS
from review.models import Canary, Deferral
from review.notifications import outbox as notification_outbox
from review.reviewing.ending import AlreadyDecided, terminal_values
from review.reviewing.reading import Reading

MISSED_MESSAGE = "This was a canary: a test item that should have been rejected."
CAUGHT_MESSAGE = "This was a canary: a test item, and you rejected it. Well caught."


def decide_canary(
    session,
    deferral: Deferral,
    holder_id: int,
    username: str,
    verdict: str,
    reason: str | None,
    now: datetime,
    reading: Reading,
) -> tuple[str, str]:
    """End the held canary; return ("caught" or "missed", the message for the reviewer).

    AlreadyDecided when the claim no longer holds (the caller turns it into its refusal).
    """
    outcome = "caught" if verdict == "reject" else "missed"
    kind = KINDS.get(deferral.canary or "")
    why = kind.why_bad if kind else "it was a known-bad action"
    if outcome == "missed":
        recorded_reason = f"Canary approved by {username}: closed, never sent to an agent."
        message = f"{MISSED_MESSAGE} Nothing ran and no agent was told. What was wrong: {why}."
    else:
        recorded_reason = reason
        message = f"{CAUGHT_MESSAGE} What was wrong: {why}."
    table = Deferral.__table__
    done = session.execute(
        update(table)
        .where(
            table.c.id == deferral.id,
            table.c.status == "in_review",
            table.c.claimed_by == holder_id,
            table.c.lease_expires_at >= now,
        )
        .values(**terminal_values("rejected", now, recorded_reason, [username]))
    ).rowcount
    if done != 1:
        raise AlreadyDecided(deferral.id)
    session.refresh(deferral)
    # People and channels that were told of it are told it ended, as for any item.
    notification_outbox.add_decided(session, [deferral], now)
    session.execute(
        update(Canary.__table__)
        .where(Canary.deferral_id == deferral.id, Canary.outcome.is_(None))
        .values(
            outcome=outcome,
            decided_by=username,
            decided_at=now,
            seconds_in_view=round(reading.seconds, 1),
        )
    )
    record_event(
        session,
        actor_kind="user",
        actor_id=username,
        event_type=f"canary.{outcome}",
        agent=deferral.agent.slug,
        deferral_id=deferral.id,
        payload={
            "canary": {"kind": deferral.canary},
            "verdict": verdict,
            "reason": reason,
            "risk_level": deferral.risk_level,
            "action_digest": deferral.action_digest,
            **reading.audit(),
            "fast": not reading.read,
        },
        at=now,
    )
    return outcome, message
