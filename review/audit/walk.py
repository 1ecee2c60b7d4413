"""Walking a range of the audit chain: read the hashed fields on the driver's own
connection, recompute every hash, check every link within each shard.

Imports nothing of the database layer (SQLAlchemy, the models): review/audit/verify.py
walks on the session's connection, and review/audit/parallel_verify.py starts this
module in a process of its own per range (`main`), which then
starts in a fraction of the time an import of the service takes.
"""

from __future__ import annotations

import hashlib
import pickle
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from review.audit.record import GENESIS_HASH, format_time, json_string, record_text

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


def time_text(dialect: str) -> Callable[[Any], str]:
    """How verify_segment reads a stored `at` that did not hash as it came (see
    `_HASH_INPUTS`): PostgreSQL's to_char is final; SQLite's may be another stored form."""
    return _same_text if dialect == "postgresql" else _sqlite_time


def driver_batches(raw: Any, dialect: str, first: int, last: int | None) -> Iterator[list[tuple]]:
    """The hashed fields of events `first`..`last` as lists of plain tuples, in order,
    flat memory, read on `raw`, a DBAPI connection (sqlite3 or psycopg), inside whatever
    transaction it is in.

    Below SQLAlchemy's result layer (a million rows through Row objects cost more than
    hashing them): a server-side cursor on PostgreSQL, fetchmany on SQLite. PostgreSQL
    is told to walk the primary key's index in order rather than sort the table (with
    stale statistics, after a bulk load, it chose a parallel scan and an on-disk sort of
    every row); the setting is restored when the walk ends.
    """
    query = _HASH_INPUTS.format(at="{at}", first=int(first), last=int(last or _NO_END))
    if dialect == "postgresql":
        with raw.cursor() as setting:
            setting.execute(
                "SELECT current_setting('enable_sort'), set_config('enable_sort', 'off', true)"
            )
            (was, _off) = setting.fetchone()
        try:
            with raw.cursor(name="countersign_audit_verify") as cursor:
                cursor.execute(query.format(at=_PG_AT))
                yield from _read_ahead(cursor)
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


def _read_ahead(cursor: Any) -> Iterator[list[tuple]]:
    """The cursor's batches, each next one fetched in a thread while the caller hashes
    this one: PostgreSQL reads and formats the rows in its own process, and the driver
    waits on the socket without the GIL, so the server's part overlaps ours instead of
    adding to it. The caller stops reading before it touches the connection again."""
    with ThreadPoolExecutor(1, thread_name_prefix="audit-verify-read") as reader:
        pending = reader.submit(cursor.fetchmany, _BATCH)
        while rows := pending.result():
            pending = reader.submit(cursor.fetchmany, _BATCH)
            yield rows


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
    an event whose fields are all text (its `prev_hash` is the hex hash its link
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
                    f'"prev_hash":"{prev}","seq":{seq}'
                    + ("}" if shard_seq is None else f',"shard":{shard},"shard_seq":{shard_seq}}}')
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


# --- one range in a process of its own (review/audit/parallel_verify.py) ---------------


def verify_range(job: dict[str, Any]) -> Segment:
    """One range of the log on a connection of its own: `job` names the database
    (`dialect`, and the driver's `connect` arguments as SQLAlchemy makes them), the range
    (`first`, `last`), the heads and the places to remember. Each shard's first link in
    the range is left to the join (`from_genesis` False)."""
    args, kwargs = job["connect"]
    if job["dialect"] == "postgresql":
        import psycopg  # noqa: PLC0415

        raw = psycopg.connect(*args, **kwargs)
    else:
        import sqlite3  # noqa: PLC0415

        raw = sqlite3.connect(*args, **kwargs)
    try:
        batches = driver_batches(raw, job["dialect"], job["first"], job["last"])
        return verify_segment(
            batches, job["heads"], job["remember"], False, time_text(job["dialect"])
        )
    finally:
        raw.close()


def main() -> None:
    """A worker's whole life: a pickled job on stdin, its Segment pickled on stdout
    (parent and child are the same program: nothing else is read). Started as
    `python -c "from review.audit.walk import main; main()"`, so that what it pickles
    is review.audit.walk's Segment, not __main__'s."""
    job = pickle.load(sys.stdin.buffer)  # noqa: S301  (its parent's pipe, nothing else)
    segment = verify_range(job)
    sys.stdout.buffer.write(pickle.dumps(segment))
    sys.stdout.buffer.flush()
