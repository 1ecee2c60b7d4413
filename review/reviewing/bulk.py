"""Several decisions at once: the reviewer's selected items, each in its own transaction.

Bulk approval takes only items the reviewer has read (in view for at least
COUNTERSIGN_MIN_READ_SECONDS, review/reviewing/reading.py), and none that needs two
approvers: approving what nobody looked at is what this tool exists to prevent. Ticking
an item's Select box does not count as reading it. Bulk rejection takes one reason for
all. Whatever is skipped is named by its summary, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from review.models import Deferral, utcnow
from review.reviewing.claims import Holder
from review.reviewing.decisions import Decided, DecisionRefused, decide
from review.reviewing.reading import assess
from review.services import Services

MAX_ITEMS = 100


@dataclass(frozen=True)
class Skipped:
    deferral_id: str
    summary: str  # agent text: shown escaped, as everywhere
    why: str


@dataclass(frozen=True)
class BulkResult:
    done: list[Decided]
    unread: list[Skipped]  # approval refused: not in view long enough
    skipped: list[Skipped]  # every other refusal


def decide_many(
    svc: Services,
    holder: Holder,
    ids: list[str],
    verdict: str,
    reason: str | None = None,
    seen_ms: dict[str, int | None] | None = None,
    now: datetime | None = None,
) -> BulkResult:
    """Approve or reject the selected deferrals; `seen_ms` is each one's time in view."""
    seen_ms = seen_ms or {}
    ids = list(dict.fromkeys(ids))[:MAX_ITEMS]
    with svc.db.read() as session:
        rows = {d.id: d for d in session.scalars(select(Deferral).where(Deferral.id.in_(ids)))}
    done: list[Decided] = []
    unread: list[Skipped] = []
    skipped: list[Skipped] = []
    for deferral_id in ids:
        d = rows.get(deferral_id)
        if d is None:
            skipped.append(Skipped(deferral_id, deferral_id, "there is no such deferral"))
            continue
        if verdict == "approve" and d.claimed_by == holder.id:
            reading = assess(
                seen_ms.get(deferral_id),
                d.claimed_at,
                now or utcnow(),
                svc.settings.min_read_seconds,
            )
            if not reading.read:
                unread.append(Skipped(d.id, d.summary, f"in view {reading.seconds:.1f} s"))
                continue
            if d.required_approvals > 1:
                why = f"needs {d.required_approvals} approvers: approve it on its own"
                skipped.append(Skipped(d.id, d.summary, why))
                continue
        try:
            done.append(
                decide(svc, holder, deferral_id, verdict, reason, now, seen_ms.get(deferral_id))
            )
        except DecisionRefused as refused:
            skipped.append(Skipped(d.id, d.summary, str(refused)))
    return BulkResult(done, unread, skipped)
