"""Verifying the audit chain: walk every event, recompute its hash, check each link.

Verifying reads the hashed fields through the driver's cursor (server-side on
PostgreSQL), so a million events take seconds and flat memory; the export reads plain
Core rows in keyset pages.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from review.audit.hashing import (
    GENESIS_HASH,
    format_time,
    heads_root,
    json_string,
    record_text,
)
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


# The hashed fields of the events in a range of sequence numbers, in order, `at` already
# in format_time's text: PostgreSQL formats it itself; SQLite stores SQLAlchemy's
# "YYYY-MM-DD HH:MM:SS.ffffff" (UTC), which `_SQLITE_AT` rewrites in the same way as
# `_sqlite_time` (any other stored form comes back as stored, and `_sqlite_time` reads
# it when its hash does not hold: see verify_segment).
_HASH_INPUTS = (
    "SELECT seq, {at}, actor_kind, actor_id, event_type, agent, deferral_id, payload,"
    " prev_hash, hash, shard, shard_seq FROM audit_events"
    " WHERE seq >= {first} AND seq <= {last} ORDER BY seq"
)
_PG_AT = """to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""
_SQLITE_AT = (
    "CASE WHEN typeof(at) = 'text' AND length(at) = 26 AND substr(at, 11, 1) = ' '"
    " THEN substr(at, 1, 10) || 'T' || substr(at, 12) || 'Z' ELSE at END"
)
_BATCH = 20000
_NO_END = 2**62


def _sqlite_time(stored: Any) -> str:
    if isinstance(stored, str) and len(stored) == 26 and stored[10] == " ":
        return f"{stored[:10]}T{stored[11:]}Z"
    if isinstance(stored, str):  # written some other way: parse it, as the model would
        stored = datetime.fromisoformat(stored)
    return format_time(stored if stored.tzinfo else stored.replace(tzinfo=UTC))


def _same_text(at: Any) -> str:
    return at


def time_text(session: Session):
    """How verify_segment reads a stored `at` that did not hash as it came (see
    `_HASH_INPUTS`): PostgreSQL's to_char is final; SQLite's may be another stored form."""
    return _same_text if session.get_bind().dialect.name == "postgresql" else _sqlite_time


def iter_hash_batches(
    session: Session, first: int = 1, last: int | None = None
) -> Iterator[list[tuple]]:
    """The hashed fields of events `first`..`last` as lists of plain tuples, in order,
    flat memory.

    Read through the database driver's own cursor, below SQLAlchemy's result layer
    (a million rows through Row objects cost more than hashing them): a server-side
    cursor on PostgreSQL, fetchmany on SQLite, both inside the session's transaction.
    PostgreSQL is told to walk the primary key's index in order rather than sort the
    table (with stale statistics, after a bulk load, it chose a parallel scan and an
    on-disk sort of every row); the setting lasts until the walk ends.
    """
    query = _HASH_INPUTS.format(at="{at}", first=int(first), last=int(last or _NO_END))
    raw = session.connection().connection.driver_connection
    if session.get_bind().dialect.name == "postgresql":
        with raw.cursor() as setting:
            setting.execute(
                "SELECT current_setting('enable_sort'), set_config('enable_sort', 'off', true)"
            )
            (was, _off) = setting.fetchone()
        try:
            with raw.cursor(name="countersign_audit_verify") as cursor:
                cursor.execute(query.format(at=_PG_AT))
                while rows := cursor.fetchmany(_BATCH):
                    yield rows
        finally:
            with raw.cursor() as setting:
                setting.execute("SELECT set_config('enable_sort', %s, true)", (was,))
        return
    cursor = raw.cursor()
    try:
        cursor.execute(query.format(at=_SQLITE_AT))
        while rows := cursor.fetchmany(_BATCH):
            yield rows
    finally:
        cursor.close()


def iter_hash_inputs(session: Session, first: int = 1, last: int | None = None) -> Iterator[tuple]:
    """`iter_hash_batches`, one row at a time."""
    for rows in iter_hash_batches(session, first, last):
        yield from rows


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


@dataclass
class Run:
    """One shard's events within a segment: where they start and end."""

    first_seq: int  # the global seq of its first event here
    first_place: int
    first_prev: str
    last_seq: int
    last_place: int
    last_hash: str


@dataclass(frozen=True)
class Segment:
    """What verifying a range of events returned: each shard's run, and the first
    problem (`at`: the global seq where it was seen, to order problems between ranges)."""

    count: int
    runs: dict[int, Run]
    bad_seq: int | None = None
    problem: str | None = None
    at: int | None = None
    hashes: dict[tuple[int, int], str] | None = None


def gap(shard: int, expected: int, found: int) -> str:
    return f"sequence gap in shard {shard}: expected {expected}, found {found} (events removed)"


REORDERED = "previous-hash link does not match (reordered)"


def verify_segment(
    batches: Iterator[list[tuple]],
    heads: dict[int, tuple[int, str]],
    remember: set[tuple[int, int]],
    from_genesis: bool,
    time_text: Callable[[Any], str] = _same_text,
) -> Segment:
    """Recompute every hash of a range of events (in global seq order, in lists as
    iter_hash_batches reads them) and check each link within its shard.

    `from_genesis`: the range starts the log, so each shard starts at place 1 after
    the genesis hash; otherwise each shard's first event here is taken as it names its
    predecessor, and the caller (`joined`) checks the join. An event beyond its shard's
    head (`heads`, read before the walk) was appended since, and is left for the next
    verify. Every hash is recomputed from the stored fields.

    Each record is first written out in one f-string, as record_text would write it for
    a sharded event whose fields are all text (its `prev_hash` is the hex hash its link
    was just checked against: the join checks a range's first one). Only when that does
    not hash to the stored hash is it recomputed the careful way (`_record_hash`:
    record_text, `time_text` for a stored time in another form, a wrong type as edited)
    before the event is called edited; so the quick way only saves time and can never
    pass an event that record_text would fail (a different text cannot hash the same).
    """
    runs: dict[int, Run] = {}
    hashes: dict[tuple[int, int], str] = {}
    # per shard: [its run here or None, its head's place, the places to remember]
    state: dict[int, list] = {}
    for shard, (place, _hash) in heads.items():
        start = Run(0, 1, GENESIS_HASH, 0, 0, GENESIS_HASH) if from_genesis else None
        state[shard] = [start, place, {p for s, p in remember if s == shard}]
    count = 0
    sha256 = hashlib.sha256
    quote = json_string

    def bad(seq: int, problem: str, at: int) -> Segment:
        return Segment(count, runs, seq, problem, at, hashes)

    for rows in batches:
        for row in rows:
            (
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
                shard,
                shard_seq,
            ) = row
            shard_state = state.get(shard)
            if shard_state is None:
                return bad(seq, f"shard {shard} has no head (events added)", seq)
            run, limit, wanted = shard_state
            if shard_seq is None:
                if shard != 0:
                    return bad(seq, "an event from before shards outside shard 0 (moved)", seq)
                place = seq
            else:
                place = shard_seq
            if place > limit:
                continue  # appended after the heads were read: the next verify has it
            if run is not None:
                if place != run.last_place + 1:
                    return bad(run.last_seq + 1, gap(shard, run.last_place + 1, place), seq)
                if prev != run.last_hash:
                    return bad(seq, REORDERED, seq)
                if run.first_seq == 0:  # the genesis start: its first event is here
                    run.first_seq = seq
                    runs[shard] = run
            else:  # its first here: the join checks where it starts, even if it is bad
                shard_state[0] = runs[shard] = run = Run(seq, place, prev, seq, place - 1, prev)
            try:
                record = (
                    f'{{"actor_id":{quote(actor_id)},"actor_kind":{quote(actor_kind)},'
                    f'"agent":{"null" if agent is None else quote(agent)},"at":"{at}",'
                    f'"deferral_id":{"null" if deferral_id is None else quote(deferral_id)},'
                    f'"event_type":{quote(event_type)},'
                    f'"payload_sha256":"{sha256(payload.encode()).hexdigest()}",'
                    f'"prev_hash":"{prev}","seq":{seq},"shard":{shard},"shard_seq":{shard_seq}}}'
                )
                quick = sha256(record.encode()).hexdigest() == stored
            except (TypeError, AttributeError):  # a field that is not text: the careful way
                quick = False
            if not quick and _record_hash(row, time_text) != stored:
                return bad(seq, "content does not match its hash (edited)", seq)
            if place in wanted:
                hashes[(shard, place)] = stored
            run.last_seq, run.last_place, run.last_hash = seq, place, stored
            count += 1
    return Segment(count, runs, hashes=hashes)


def _record_hash(row: tuple, time_text: Callable[[Any], str]) -> str | None:
    """The hash of an event's record as record_text writes it (None: it cannot be
    written, a field of the wrong type: the event was edited)."""
    seq, at, actor_kind, actor_id, event_type, agent, deferral_id, payload, prev = row[:9]
    shard, shard_seq = row[10:12]
    try:
        record = record_text(
            seq,
            time_text(at),
            actor_kind,
            actor_id,
            event_type,
            agent,
            deferral_id,
            hashlib.sha256(payload.encode()).hexdigest(),
            prev,
            shard,
            shard_seq,
        )
    except (TypeError, ValueError, AttributeError):
        return None
    return hashlib.sha256(record.encode()).hexdigest()


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
