"""The audit chain: append-only, hash-chained events, written inside the caller's transaction.

The log is N chains, shards (docs/SCALING.md, "Chain shards"): an event goes to the
shard of its deferral (else of its agent, else shard 0; hashing.shard_of), so a
deferral's events are one shard's, in order. Each event's hash is SHA-256 over the
RFC 8785 canonical JSON of its fields, its global `seq`, its shard and place there, and
the previous hash in its shard, so changing, removing or reordering any stored event
breaks every hash after it in its shard. Writers lock the `audit_head` rows of the
shards they append to (on SQLite the IMMEDIATE transaction already serialises
writers), so each shard has one order and no gaps even with many processes writing;
signed checkpoints commit to every shard's head (review/audit/checkpoints.py).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Insert,
    Table,
    bindparam,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from review.audit.hashing import link, shard_key, shard_of, unchained
from review.audit.shards import shard_count
from review.db import Database
from review.driver_statements import BoundStatement, connection_of, driver
from review.models import Agent, AuditEvent, AuditHead


def lock_chain(session: Session, deferrals: Sequence[str] = ()) -> None:
    """Take the chain's locks now, as the transaction's first statement: every shard's,
    or with `deferrals` only the shards their events go to.

    Lock order, so PostgreSQL never deadlocks: a transaction that changes existing
    deferrals or an agent's kill switch takes the chain locks first, before any row
    lock, and shard heads are always locked in ascending shard order (here, and in
    `countersign_append`). (Intake only inserts, so it may take its shard's lock last:
    see review/intake/deferrals.py.) A transaction narrowed to `deferrals` must write
    events only for them; an event for another shard is locked when appended, after
    the rows it holds, which is safe only for inserts. On SQLite the IMMEDIATE
    transaction already holds the one write lock (review/db.py: BEGIN IMMEDIATE, which
    `session.connection()` issues here, after the WriterLock), so no statement is sent:
    a SELECT there locks nothing and only lengthens the lock's hold.
    """
    conn = session.connection()
    if conn.dialect.name == "sqlite":
        return
    if not deferrals:
        conn.execute(_LOCK_ALL)
        return
    count = shard_count(conn)
    wanted = sorted({shard_of(shard_key(d, None), count) for d in deferrals})
    conn.execute(_LOCK_SOME, {"shards": wanted})


@contextmanager
def chained_write(db: Database, *, deferrals: Sequence[str] = ()) -> Iterator[Session]:
    """`db.write()` holding the chain's locks from its first statement (see lock_chain):
    every shard's, or with `deferrals` only theirs, so that writes about deferrals in
    other shards go on meanwhile (docs/SCALING.md, "Chain shards")."""
    with db.write() as session:
        lock_chain(session, deferrals)
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
    """SQLite: every shard's head and the next global sequence number, read in this
    (IMMEDIATE, so locked) transaction, and the agent it guards, if any."""

    heads: dict[int, tuple[int, str]]  # shard -> (its last shard_seq, its last hash)
    last_seq: int
    agent: GuardedAgent | None = None


def take_head(session: Session | Connection, *, guard_agent: int | None = None) -> Head:
    """SQLite: read the heads (and, with `guard_agent`, that agent's row) for
    `append_events`. PostgreSQL chains in the server (`countersign_append`) instead.

    On SQLite the three reads run on the driver (review/driver_statements.py): they
    are the first statements of a transaction that holds the one write lock, so every
    microsecond spent on them here is one that every other writer waits. `session`
    may be a Core connection in its transaction (review/db.py `write_core`)."""
    conn = connection_of(session)
    if conn.dialect.name == "sqlite":
        heads = {shard: (seq, hash_) for shard, seq, hash_ in driver.execute(conn, _READ_HEADS, {})}
        last_seq = driver.execute(conn, _LAST_SEQ, {}).fetchone()[0] or 0
        agent_row = (
            driver.execute(conn, _READ_AGENT, {"agent_id": guard_agent}).fetchone()
            if guard_agent is not None
            else None
        )
        if guard_agent is not None and agent_row is None:
            raise LookupError(f"no agent {guard_agent}")
    else:
        heads = {shard: (seq, hash_) for shard, seq, hash_ in conn.execute(_READ_HEADS)}
        last_seq = conn.execute(_LAST_SEQ).scalar() or 0
        agent_row = (
            conn.execute(_READ_AGENT, {"agent_id": guard_agent}).one()
            if guard_agent is not None
            else None
        )
    agent = GuardedAgent(*agent_row) if agent_row is not None else None
    return Head(heads, last_seq, agent)


def record_events(session: Session, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Append several events in order, each to its shard, under those shards' locks."""
    if session.connection().dialect.name == "postgresql":
        return append_events(session, None, events)
    return append_events(session, take_head(session), events)


def placed_events(bind: Connection | Engine, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events ready to chain (hashing.unchained), each with its shard.

    Needs no lock: `bind` may be the engine, so that intake places (and hashes up to
    their link) its events before it takes the chain's lock."""
    shards = shard_count(bind)
    rows = []
    for event in events:
        row = unchained(event)
        row["shard"] = shard_of(shard_key(row["deferral_id"], row["agent"]), shards)
        rows.append(row)
    return rows


def append_events(
    session: Session,
    head: Head | None,
    events: list[dict[str, Any]],
    *,
    insert_first: tuple[Table, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Chain `events`, each after its shard's head; move the heads.

    PostgreSQL: one statement, `countersign_append` (migration 0025), locks the shards'
    heads in ascending order, gives each event the next global `seq` and its shard's
    next place, hashes and inserts them and moves the heads, all in the server, so a
    shard's lock is held for no round trip of its own. SQLite: `head` (take_head, in
    this IMMEDIATE transaction) and in-process statements. `insert_first`: a row to
    insert just before.
    """
    conn = session.connection()  # Core on the session's connection: no ORM layer per statement
    return append_placed(session, head, placed_events(conn, events), insert_first=insert_first)


def append_placed(
    session: Session | Connection,
    head: Head | None,
    rows: list[dict[str, Any]],
    *,
    insert_first: tuple[Table, dict[str, Any]] | BoundStatement | None = None,
) -> list[dict[str, Any]]:
    """`append_events` for events already placed (`placed_events`), so that the work of
    hashing them up to their link can be done before the transaction takes its locks;
    on SQLite `insert_first` may likewise be bound already (`driver.bind`). `session` may
    be a Core connection in its transaction (review/db.py `write_core`)."""
    conn = connection_of(session)
    if conn.dialect.name == "postgresql":
        assert not isinstance(insert_first, BoundStatement), "bound for SQLite's driver"
        if insert_first:
            conn.execute(_insert(insert_first[0]), insert_first[1])
        chained = conn.execute(_PG_APPEND, {"events": rows_json(rows)}).all()
        for row, (seq, shard_seq, prev_hash, hash_) in zip(rows, chained, strict=True):
            del row["prefix"]
            row.update(seq=seq, shard_seq=shard_seq, prev_hash=prev_hash, hash=hash_)
        return rows
    assert head is not None, "SQLite chains in Python: take_head first"
    heads, seq = dict(head.heads), head.last_seq
    for row in rows:
        shard = row["shard"]
        shard_seq, prev_hash = heads[shard]
        seq, shard_seq = seq + 1, shard_seq + 1
        hash_ = link(row.pop("prefix"), prev_hash, seq, shard, shard_seq)
        row.update(seq=seq, shard_seq=shard_seq, prev_hash=prev_hash, hash=hash_)
        heads[shard] = (shard_seq, hash_)
    # SQLite: in-process statements, run on the driver (review/db.py)
    if isinstance(insert_first, BoundStatement):
        driver.execute_bound(conn, insert_first)
    elif insert_first:
        driver.execute(conn, _insert(insert_first[0]), insert_first[1])
    driver.executemany(conn, _insert(_events_table), rows)
    moved = sorted({row["shard"] for row in rows})
    driver.executemany(
        conn,
        _MOVE_HEAD,
        [{"head_shard": s, "head_seq": heads[s][0], "head_hash": heads[s][1]} for s in moved],
    )
    return rows


_head_table, _events_table = AuditHead.__table__, AuditEvent.__table__
_agents_table = Agent.__table__
_LOCK_ALL = select(_head_table.c.shard).order_by(_head_table.c.shard).with_for_update()
_LOCK_SOME = (
    select(_head_table.c.shard)
    .where(_head_table.c.shard.in_(bindparam("shards", expanding=True)))
    .order_by(_head_table.c.shard)
    .with_for_update()
)
_READ_HEADS = select(_head_table.c.shard, _head_table.c.seq, _head_table.c.hash)
_LAST_SEQ = select(func.max(_events_table.c.seq))
_READ_AGENT = select(
    _agents_table.c.slug,
    _agents_table.c.state,
    _agents_table.c.state_reason,
    _agents_table.c.undecided,
).where(_agents_table.c.id == bindparam("agent_id"))
_MOVE_HEAD = (
    update(_head_table)
    .where(_head_table.c.shard == bindparam("head_shard"))
    .values(seq=bindparam("head_seq"), hash=bindparam("head_hash"))
)


@functools.cache
def _insert(table: Table) -> Insert:
    return insert(table)


# PostgreSQL: chain, insert and move the heads in one statement (migration 0025). The
# events travel as one JSON parameter, so the statement's text is fixed whatever their
# number: psycopg and the server parse and plan it once per connection.
_PG_APPEND = text(
    "SELECT out_seq, out_shard_seq, out_prev_hash, out_hash "
    "FROM countersign_append(CAST(:events AS jsonb))"
)


def _json_value(value: Any) -> str:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.isoformat()  # microseconds and offset: timestamptz keeps both
    raise TypeError(f"cannot store {type(value).__name__} as JSON")


_ROWS_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=_json_value)


def rows_json(rows: Any) -> str:
    """Rows (datetimes included) as the JSON PostgreSQL's jsonb_populate_record reads."""
    return _ROWS_JSON.encode(rows)
