"""Verifying the audit chain: walk every event, recompute its hash, check each link.

Verifying reads the hashed fields through the driver's cursor (server-side on
PostgreSQL), so a million events take seconds and flat memory; the export reads plain
Core rows in keyset pages.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from review.audit.hashing import GENESIS_HASH, format_time, record_text
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


# The hashed fields of the events in a range of sequence numbers, in order, `at` already
# in format_time's text: PostgreSQL formats it itself; SQLite stores SQLAlchemy's
# "YYYY-MM-DD HH:MM:SS.ffffff" (UTC), which `_sqlite_time` turns into the same text.
_HASH_INPUTS = (
    "SELECT seq, {at}, actor_kind, actor_id, event_type, agent, deferral_id, payload,"
    " prev_hash, hash FROM audit_events WHERE seq >= {first} AND seq <= {last} ORDER BY seq"
)
_PG_AT = """to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""
_BATCH = 20000
_NO_END = 2**62


def _sqlite_time(stored: Any) -> str:
    if isinstance(stored, str) and len(stored) == 26 and stored[10] == " ":
        return f"{stored[:10]}T{stored[11:]}Z"
    if isinstance(stored, str):  # written some other way: parse it, as the model would
        stored = datetime.fromisoformat(stored)
    return format_time(stored if stored.tzinfo else stored.replace(tzinfo=UTC))


def iter_hash_inputs(session: Session, first: int = 1, last: int | None = None) -> Iterator[tuple]:
    """The hashed fields of events `first`..`last` as plain tuples, in order, flat memory.

    Read through the database driver's own cursor, below SQLAlchemy's result layer
    (a million rows through Row objects cost more than hashing them): a server-side
    cursor on PostgreSQL, fetchmany on SQLite, both inside the session's transaction.
    """
    query = _HASH_INPUTS.format(at="{at}", first=int(first), last=int(last or _NO_END))
    raw = session.connection().connection.driver_connection
    if session.get_bind().dialect.name == "postgresql":
        with raw.cursor(name="countersign_audit_verify") as cursor:
            cursor.itersize = _BATCH
            cursor.execute(query.format(at=_PG_AT))
            yield from cursor
        return
    cursor = raw.cursor()
    try:
        cursor.execute(query.format(at="at"))
        while rows := cursor.fetchmany(_BATCH):
            for row in rows:
                yield (row[0], _sqlite_time(row[1]), *row[2:])
    finally:
        cursor.close()


@dataclass(frozen=True)
class Segment:
    """What verifying events `first`..: returned: how far they hold, and their ends."""

    first: int
    first_prev: str | None  # the prev_hash its first event names (None: no events)
    count: int
    last_hash: str | None
    bad_seq: int | None = None
    problem: str | None = None
    hashes: dict[int, str] | None = None


def verify_segment(
    rows: Iterator[tuple], first: int, prev_hash: str | None, remember: set[int]
) -> Segment:
    """Recompute every hash of consecutive events starting at `first` and check each link.

    `prev_hash`: the hash the first event must name, or None to take the one it names
    (a segment verified apart from its predecessor; the caller checks the join).
    Every hash is recomputed from the stored fields (record_text is event_hash_record's
    text, given `at` already formatted).
    """
    expected_seq, first_prev, last_hash, count = first, prev_hash, None, 0
    hashes: dict[int, str] = {}
    sha256 = hashlib.sha256
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
    ) in rows:
        if seq != expected_seq:
            problem = f"sequence gap: expected {expected_seq}, found {seq} (events removed)"
            return Segment(first, first_prev, count, last_hash, expected_seq, problem, hashes)
        if prev_hash is None:
            first_prev = prev_hash = prev
        if prev != prev_hash:
            problem = "previous-hash link does not match (reordered)"
            return Segment(first, first_prev, count, last_hash, seq, problem, hashes)
        record = record_text(
            seq,
            at,
            actor_kind,
            actor_id,
            event_type,
            agent,
            deferral_id,
            sha256(payload.encode()).hexdigest(),
            prev,
        )
        if sha256(record.encode()).hexdigest() != stored:
            problem = "content does not match its hash (edited)"
            return Segment(first, first_prev, count, last_hash, seq, problem, hashes)
        if seq in remember:
            hashes[seq] = stored
        prev_hash = last_hash = stored
        expected_seq, count = expected_seq + 1, count + 1
    return Segment(first, first_prev, count, last_hash, hashes=hashes)


def verify_chain(session: Session, remember: set[int] | None = None, jobs: int = 1) -> VerifyResult:
    """Walk the whole chain; name the first event whose link or hash does not hold.

    The head is read first and bounds the walk, so events appended while it runs are
    left for the next verify rather than mistaken for a head that moved. `remember`:
    sequence numbers whose hashes the caller wants back (checkpoints). `jobs` > 1
    verifies that many ranges in parallel processes (review/audit/parallel_verify.py).
    """
    head = session.get(AuditHead, 1)
    last = head.seq if head is not None else None
    remember = remember or set()
    if jobs > 1 and last:
        from review.audit.parallel_verify import verify_segments_in_parallel  # noqa: PLC0415

        segments = verify_segments_in_parallel(session, last, remember, jobs)
    else:
        segments = [verify_segment(iter_hash_inputs(session, 1, last), 1, GENESIS_HASH, remember)]
    return joined(segments, head)


def joined(segments: list[Segment], head: AuditHead | None) -> VerifyResult:
    """The chain's verdict from its segments in order: each must hold, each must name
    the last hash of the one before, and the last must end where the head says."""
    count, prev_hash, hashes = 0, GENESIS_HASH, {}
    for number, segment in enumerate(segments):
        if segment.first_prev is not None and segment.first_prev != prev_hash:
            problem = "previous-hash link does not match (reordered)"
            return VerifyResult(False, count, prev_hash, segment.first, problem)
        hashes.update(segment.hashes or {})
        if segment.problem is not None:
            return VerifyResult(
                False,
                count + segment.count,
                segment.last_hash or prev_hash,
                segment.bad_seq,
                segment.problem,
            )
        count, prev_hash = count + segment.count, segment.last_hash or prev_hash
        following = segments[number + 1].first if number + 1 < len(segments) else None
        if following is not None and segment.first + segment.count != following:
            problem = f"sequence gap: expected {segment.first + segment.count} (events removed)"
            return VerifyResult(False, count, prev_hash, segment.first + segment.count, problem)
    if head is not None and (head.seq != count or head.hash != prev_hash):
        problem = f"chain ends at {count} but the head records {head.seq} (events removed)"
        return VerifyResult(False, count, prev_hash, count + 1, problem)
    return VerifyResult(True, count, prev_hash, hashes=hashes)
