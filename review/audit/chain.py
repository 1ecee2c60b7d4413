"""The audit chain: append-only, hash-chained events, written inside the caller's transaction.

Each event's hash is SHA-256 over the RFC 8785 canonical JSON of its fields and the
previous event's hash, so changing, removing or reordering any stored event breaks
every hash after it. Writers lock the single `audit_head` row (on SQLite the
IMMEDIATE transaction already serialises writers), so the chain has one order and no
gaps even with many processes writing.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Insert, Table, bindparam, insert, select, text, update
from sqlalchemy.orm import Session

from review.audit.hashing import (
    link,
    unchained,
)
from review.db import Database, driver
from review.models import Agent, AuditEvent, AuditHead


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
