"""Verifying the audit chain: walk every event, recompute its hash, check each link.

Verifying reads the hashed fields through the driver's cursor (server-side on
PostgreSQL), so a million events take seconds and flat memory; the export reads plain
Core rows in keyset pages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from review.audit.hashing import GENESIS_HASH, heads_root
from review.audit.walk import (  # noqa: F401  (Segment, verify_segment: the walk's names)
    REORDERED,
    Run,
    Segment,
    driver_batches,
    gap,
    verify_segment,
)
from review.audit.walk import time_text as _time_text
from review.models import AuditEvent, AuditHead


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    count: int
    head: str  # one shard: its last hash; more: the Merkle root over their heads
    bad_seq: int | None = None
    problem: str | None = None
    # the hashes at the (shard, shard_seq) places asked for (checkpoints)
    hashes: dict[tuple[int, int], str] | None = None
    heads: dict[int, tuple[int, str]] | None = None  # shard -> (its length, its last hash)

    def describe(self) -> str:
        if self.ok:
            line = f"OK {self.count} events, head {self.head}"  # PROTOCOL.md section 7
            if self.heads is not None and len(self.heads) > 1:
                line += f" (the Merkle root over {len(self.heads)} shards' heads)"
            return line
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
    _events.c.shard,
    _events.c.shard_seq,
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


def time_text(session: Session) -> Callable[[Any], str]:
    """verify_segment's reading of a stored time that did not hash as it came."""
    return _time_text(session.get_bind().dialect.name)


def iter_hash_batches(
    session: Session, first: int = 1, last: int | None = None
) -> Iterator[list[tuple]]:
    """The hashed fields of events `first`..`last` in lists of plain tuples, in order,
    read on the session's own connection inside its transaction (walk.driver_batches)."""
    raw = session.connection().connection.driver_connection
    yield from driver_batches(raw, session.get_bind().dialect.name, first, last)


def read_heads(session: Session) -> dict[int, tuple[int, str]]:
    """Every shard's head: shard -> (its last shard_seq, its last hash)."""
    heads = AuditHead.__table__
    rows = session.connection().execute(select(heads.c.shard, heads.c.seq, heads.c.hash))
    return {shard: (seq, hash_) for shard, seq, hash_ in rows}


@dataclass(frozen=True)
class LogHead:
    """The log as its heads say, for pages: how many events, in how many shards, and
    the hash that names them (a single chain's head, or the root over the heads)."""

    events: int
    shards: int
    hash: str


def log_head(session: Session) -> LogHead:
    heads = read_heads(session)
    return LogHead(sum(place for place, _h in heads.values()), len(heads), head_of(heads))


def last_seq(session: Session) -> int:
    return session.connection().execute(select(func.max(_events.c.seq))).scalar() or 0


def verify_chain(
    session: Session, remember: set[tuple[int, int]] | None = None, jobs: int = 1
) -> VerifyResult:
    """Walk every shard's chain; name the first event whose link or hash does not hold.

    The heads are read first and bound the walk, so events appended while it runs are
    left for the next verify rather than mistaken for a head that moved. `remember`:
    (shard, shard_seq) places whose hashes the caller wants back (checkpoints). `jobs`
    > 1 verifies that many ranges of the global seq in parallel processes
    (review/audit/parallel_verify.py).
    """
    heads = read_heads(session)
    last = last_seq(session)
    remember = remember or set()
    if jobs > 1 and last:
        from review.audit.parallel_verify import verify_segments_in_parallel  # noqa: PLC0415

        segments = verify_segments_in_parallel(session, last, heads, remember, jobs)
    else:
        batches = iter_hash_batches(session, 1, last)
        segments = [verify_segment(batches, heads, remember, True, time_text(session))]
    return joined(segments, heads)


def joined(segments: list[Segment], heads: dict[int, tuple[int, str]]) -> VerifyResult:
    """The log's verdict from its ranges in order: each must hold, each shard's first
    event in a range must follow its last in the ranges before, and each shard must end
    where its head says. The first problem by global seq wins, as in one walk."""
    ends = {shard: Run(0, 0, GENESIS_HASH, 0, 0, GENESIS_HASH) for shard in heads}
    count, hashes = 0, {}
    for segment in segments:
        problems = []
        if segment.problem is not None:
            problems.append((segment.at, 1, segment.bad_seq, segment.problem))
        for shard, run in segment.runs.items():
            end = ends.setdefault(shard, Run(0, 0, GENESIS_HASH, 0, 0, GENESIS_HASH))
            if run.first_place != end.last_place + 1:
                expected = end.last_place + 1
                problem = gap(shard, expected, run.first_place)
                problems.append((run.first_seq, 0, end.last_seq + 1, problem))
            elif run.first_prev != end.last_hash:
                problems.append((run.first_seq, 0, run.first_seq, REORDERED))
        hashes.update(segment.hashes or {})
        count += segment.count
        if problems:
            # one walk checks an event's place and link before its hash: so does the join
            _at, _order, bad_seq, problem = min(problems)
            return VerifyResult(False, 0, "", bad_seq, problem)  # count: not all were read
        for shard, run in segment.runs.items():
            ends[shard] = Run(0, 0, GENESIS_HASH, run.last_seq, run.last_place, run.last_hash)
    for shard in sorted(heads):
        place, hash_ = heads[shard]
        end = ends[shard]
        if (end.last_place, end.last_hash) != (place, hash_):
            problem = (
                f"shard {shard}'s chain ends at {end.last_place} but its head records "
                f"{place} (events removed)"
            )
            return VerifyResult(False, count, end.last_hash, end.last_seq + 1, problem)
    return VerifyResult(True, count, head_of(heads), hashes=hashes, heads=dict(heads))


def head_of(heads: dict[int, tuple[int, str]]) -> str:
    """What `OK ... head` names: a single chain's last hash, or the Merkle root."""
    if len(heads) == 1:
        return next(iter(heads.values()))[1]
    return heads_root([(shard, place, hash_) for shard, (place, hash_) in heads.items()])
