"""The audit chain: append-only, hash-chained events, written inside the caller's transaction.

Each event's hash is SHA-256 over the RFC 8785 canonical JSON of its fields and the
previous event's hash, so changing, removing or reordering any stored event breaks
every hash after it. Writers lock the single `audit_head` row (on SQLite the
IMMEDIATE transaction already serialises writers), so the chain has one order and no
gaps even with many processes writing.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import rfc8785
from sqlalchemy import Insert, Table, bindparam, insert, select, text, update
from sqlalchemy.orm import Session

from review.db import Database, driver
from review.models import Agent, AuditEvent, AuditHead, utcnow

GENESIS_HASH = "0" * 64
ACTOR_KINDS = ("user", "agent", "system")


def canonical_json(value: Any) -> bytes:
    return rfc8785.dumps(value)


def payload_json(value: Any) -> str:
    """An event's payload as stored and hashed: deterministic JSON (sorted keys, no spaces).

    The chain hashes this text as it is stored, so a verifier never re-serialises it; the
    C json encoder is several times faster than RFC 8785 on large payloads.
    """
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def format_time(at: datetime) -> str:
    """`2026-11-21T10:00:00.000000Z` (UTC, microseconds), as hashed and exported."""
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


# One encoder, built once: json.dumps with options builds a new one on every call.
_RECORD_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def event_hash(**fields: Any) -> str:
    """SHA-256 over the RFC 8785 canonical JSON of the event's fields (event_hash_record).

    The payload enters as the SHA-256 of its stored text, so a large payload is hashed
    once by hashlib instead of being escaped again by the canonicaliser.
    """
    return hashlib.sha256(event_hash_record(**fields).encode()).hexdigest()


def event_hash_record(
    *,
    seq: int,
    at: datetime,
    actor_kind: str,
    actor_id: str,
    event_type: str,
    agent: str | None,
    deferral_id: str | None,
    payload: str,
    prev_hash: str,
) -> str:
    """The text `event_hash` hashes: the event's fields, payload by its SHA-256."""
    record = {
        "seq": seq,
        "at": format_time(at),
        "actor_kind": actor_kind,
        "actor_id": actor_id,
        "event_type": event_type,
        "agent": agent,
        "deferral_id": deferral_id,
        "payload_sha256": hashlib.sha256(payload.encode()).hexdigest(),
        "prev_hash": prev_hash,
    }
    # For this record (ASCII keys; strings, integers within 2^53 and nulls as values),
    # RFC 8785 is byte for byte json.dumps with sorted keys, no spaces and no ASCII
    # escaping (tests/test_audit_evidence.py checks it with hypothesis); the C encoder
    # makes verifying a million events several times faster.
    return _RECORD_JSON.encode(record)


def chain_prefix(**fields: Any) -> str:
    """The event's hashed record up to its link: `event_hash` is the SHA-256 of

        prefix + prev_hash + '","seq":' + str(seq) + '}'

    (`prev_hash` and `seq` sort last among the record's keys). PostgreSQL's intake
    function (migration 0008) finishes the hash under the chain lock from this.
    """
    text = event_hash_record(seq=0, prev_hash="", **fields)
    return text[: text.rindex('"prev_hash":"') + len('"prev_hash":"')]


def link(prefix: str, prev_hash: str, seq: int) -> str:
    """An event's hash from its `chain_prefix`, the previous hash and its sequence number."""
    return hashlib.sha256(f'{prefix}{prev_hash}","seq":{seq}}}'.encode()).hexdigest()


def unchained(event: dict[str, Any]) -> dict[str, Any]:
    """An event ready for the server to chain (migration 0008): its row and `prefix`."""
    if event["actor_kind"] not in ACTOR_KINDS:
        raise ValueError(f"unknown actor kind {event['actor_kind']!r}")
    row = {
        "at": event.get("at") or utcnow(),
        "actor_kind": event["actor_kind"],
        "actor_id": event["actor_id"],
        "event_type": event["event_type"],
        "agent": event.get("agent"),
        "deferral_id": event.get("deferral_id"),
        "payload": payload_json(event.get("payload") or {}),
    }
    return {**row, "prefix": chain_prefix(**row)}


def stored_event_hash(e: Any) -> str:
    """The hash an event (anything with the event's attributes) should carry."""
    return event_hash(
        seq=e.seq,
        at=e.at,
        actor_kind=e.actor_kind,
        actor_id=e.actor_id,
        event_type=e.event_type,
        agent=e.agent,
        deferral_id=e.deferral_id,
        payload=e.payload,
        prev_hash=e.prev_hash,
    )


def lock_chain(session: Session) -> None:
    """Take the chain's lock now, as the transaction's first statement.

    Lock order, so PostgreSQL never deadlocks: a transaction that changes existing
    deferrals or an agent's kill switch takes the chain lock first, before any row
    lock. (Intake only inserts, so it may take it last: see review/intake/deferrals.py.) On
    SQLite the IMMEDIATE transaction already holds the one write lock.
    """
    head = AuditHead.__table__
    session.connection().execute(select(head.c.seq).where(head.c.id == 1).with_for_update())


@contextmanager
def chained_write(db: Database) -> Iterator[Session]:
    """`db.write()` holding the chain lock from its first statement (see lock_chain)."""
    with db.write() as session:
        lock_chain(session)
        yield session


def record_event(
    session: Session,
    *,
    actor_kind: str,
    actor_id: str,
    event_type: str,
    agent: str | None = None,
    deferral_id: str | None = None,
    payload: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """Append one event to the chain inside `session`'s transaction (which the caller commits)."""
    return record_events(
        session,
        [
            {
                "actor_kind": actor_kind,
                "actor_id": actor_id,
                "event_type": event_type,
                "agent": agent,
                "deferral_id": deferral_id,
                "payload": payload,
                "at": at,
            }
        ],
    )[0]


@dataclass(frozen=True)
class GuardedAgent:
    """An agent's row as read under the chain lock (intake's kill switch and pending cap)."""

    slug: str
    state: str
    state_reason: str
    undecided: int


@dataclass(frozen=True)
class Head:
    """The chain's head, locked by this transaction, and the agent it guards, if any."""

    seq: int
    hash: str
    agent: GuardedAgent | None = None


def take_head(session: Session, *, guard_agent: int | None = None) -> Head:
    """Lock the chain's head (and, with `guard_agent`, that agent's row) and read them.

    Guarding locks the agent FOR NO KEY UPDATE: the newest version of its kill switch
    and undecided count, without conflicting with the KEY SHARE lock that inserting a
    deferral (a foreign key to the agent) takes.
    """
    conn = session.connection()
    if guard_agent is None:
        return Head(*conn.execute(_LOCK_HEAD).one())
    if conn.dialect.name == "sqlite":  # the IMMEDIATE transaction holds the only write lock
        row = driver.execute(conn, _LOCK_HEAD_AND_AGENT, {"agent_id": guard_agent}).fetchone()
    else:
        row = conn.execute(_LOCK_HEAD_AND_AGENT, {"agent_id": guard_agent}).one()
    seq, hash_, *agent = row
    return Head(seq, hash_, GuardedAgent(*agent))


def record_events(session: Session, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Append several events in order under one take of the chain lock."""
    return append_events(session, take_head(session), events)


def append_events(
    session: Session,
    head: Head,
    events: list[dict[str, Any]],
    *,
    insert_first: tuple[Table, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Chain `events` after `head` (locked by take_head in this transaction); move the head.

    The chain lock is the single point where every state change in the service is
    ordered, so it is held for as few round trips as possible: one statement took it,
    one writes the events and the new head (on PostgreSQL a single statement), then
    the caller commits. `insert_first`: a row to insert just before, under the lock.
    """
    conn = session.connection()  # Core on the session's connection: no ORM layer per statement
    head_seq, head_hash = head.seq, head.hash
    rows = []
    for event in events:
        row = unchained(event)
        head_seq += 1
        row.update(
            seq=head_seq, prev_hash=head_hash, hash=link(row.pop("prefix"), head_hash, head_seq)
        )
        rows.append(row)
        head_hash = row["hash"]
    if conn.dialect.name == "postgresql":
        if insert_first:
            conn.execute(_insert(insert_first[0]), insert_first[1])
        params = {"head_seq": head_seq, "head_hash": head_hash, "events": rows_json(rows)}
        conn.execute(_PG_APPEND, params)
    else:  # SQLite: in-process statements, run on the driver (review/db.py)
        if insert_first:
            driver.execute(conn, _insert(insert_first[0]), insert_first[1])
        driver.executemany(conn, _insert(_events_table), rows)
        driver.execute(conn, _MOVE_HEAD, {"head_seq": head_seq, "head_hash": head_hash})
    return rows


_head_table, _events_table = AuditHead.__table__, AuditEvent.__table__
_agents_table = Agent.__table__
_LOCK_HEAD = (
    select(_head_table.c.seq, _head_table.c.hash).where(_head_table.c.id == 1).with_for_update()
)
_LOCK_HEAD_AND_AGENT = (
    select(
        _head_table.c.seq,
        _head_table.c.hash,
        _agents_table.c.slug,
        _agents_table.c.state,
        _agents_table.c.state_reason,
        _agents_table.c.undecided,
    )
    .join_from(_head_table, _agents_table, _agents_table.c.id == bindparam("agent_id"))
    .where(_head_table.c.id == 1)
    .with_for_update(of=[_head_table, _agents_table], key_share=True)
)
_MOVE_HEAD = (
    update(_head_table)
    .where(_head_table.c.id == 1)
    .values(seq=bindparam("head_seq"), hash=bindparam("head_hash"))
)


@functools.cache
def _insert(table: Table) -> Insert:
    return insert(table)


# PostgreSQL: insert the events and move the head in one statement. The rows travel as
# one JSON parameter and become rows with jsonb_populate_recordset (column by column, in
# the table's own types), so the statement's text is fixed whatever the number of
# events: psycopg and the server parse and plan it once per connection, and the rows are
# serialised by one call of the C JSON encoder instead of a bind processor per column.
_PG_APPEND = text(
    "WITH appended AS (INSERT INTO audit_events SELECT * FROM "
    "jsonb_populate_recordset(CAST(NULL AS audit_events), CAST(:events AS jsonb))) "
    "UPDATE audit_head SET seq = :head_seq, hash = :head_hash WHERE id = 1"
)


def _json_value(value: Any) -> str:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.isoformat()  # microseconds and offset: timestamptz keeps both
    raise TypeError(f"cannot store {type(value).__name__} as JSON")


_ROWS_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=_json_value)


def rows_json(rows: Any) -> str:
    """Rows (datetimes included) as the JSON PostgreSQL's jsonb_populate_record reads."""
    return _ROWS_JSON.encode(rows)


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
