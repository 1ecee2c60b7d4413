"""Verifying the audit chain: walk every event, recompute its hash, check each link.

Rows are read as plain Core rows in keyset pages, so a million events take flat memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from review.audit.hashing import GENESIS_HASH, event_hash
from review.models import AuditEvent, AuditHead


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    count: int
    head: str
    bad_seq: int | None = None
    problem: str | None = None
    hashes: dict[int, str] | None = None  # the hashes at the sequence numbers asked for

    def describe(self) -> str:
        if self.ok:
            return f"OK {self.count} events, head {self.head}"
        if self.bad_seq is None:
            return f"BAD: {self.problem}"
        return f"BAD event {self.bad_seq}: {self.problem}"


_events = AuditEvent.__table__
EVENT_COLUMNS = (
    _events.c.seq,
    _events.c.at,
    _events.c.actor_kind,
    _events.c.actor_id,
    _events.c.event_type,
    _events.c.agent,
    _events.c.deferral_id,
    _events.c.payload,
    _events.c.prev_hash,
    _events.c.hash,
)


def iter_rows(session: Session, batch: int = 10000, after: int = 0) -> Iterator[Any]:
    """Every event as a plain row, in sequence order, read in keyset pages (flat memory).

    Core columns, not ORM ones: a million rows skip the ORM's loading layer.
    """
    conn = session.connection()
    while True:
        rows = conn.execute(
            select(*EVENT_COLUMNS).where(_events.c.seq > after).order_by(_events.c.seq).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        after = rows[-1].seq


def iter_events(session: Session, batch: int = 5000) -> Iterator[AuditEvent]:
    """Every event in sequence order, read in keyset pages so memory stays flat."""
    after = 0
    while True:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.seq > after).order_by(AuditEvent.seq).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        after = rows[-1].seq
        session.expunge_all()


def verify_chain(session: Session, remember: set[int] | None = None) -> VerifyResult:
    """Walk the whole chain; name the first event whose link or hash does not hold.

    `remember`: sequence numbers whose hashes the caller wants back (checkpoints).
    """
    expected_seq, prev_hash, count = 1, GENESIS_HASH, 0
    remember = remember or set()
    hashes: dict[int, str] = {}
    for (
        seq,
        at,
        actor_kind,
        actor_id,
        event_type,
        agent,
        deferral_id,
        payload,
        prev,
        stored,
    ) in iter_rows(session):
        if seq != expected_seq:
            problem = f"sequence gap: expected {expected_seq}, found {seq} (events removed)"
            return VerifyResult(False, count, prev_hash, expected_seq, problem)
        if prev != prev_hash:
            return VerifyResult(
                False, count, prev_hash, seq, "previous-hash link does not match (reordered)"
            )
        recomputed = event_hash(
            seq=seq,
            at=at,
            actor_kind=actor_kind,
            actor_id=actor_id,
            event_type=event_type,
            agent=agent,
            deferral_id=deferral_id,
            payload=payload,
            prev_hash=prev,
        )
        if recomputed != stored:
            return VerifyResult(
                False, count, prev_hash, seq, "content does not match its hash (edited)"
            )
        if seq in remember:
            hashes[seq] = stored
        prev_hash, expected_seq, count = stored, expected_seq + 1, count + 1
    head = session.get(AuditHead, 1)
    if head is not None and (head.seq != count or head.hash != prev_hash):
        problem = f"chain ends at {count} but the head records {head.seq} (events removed)"
        return VerifyResult(False, count, prev_hash, count + 1, problem)
    return VerifyResult(True, count, prev_hash, hashes=hashes)
