"""The audit chain: append-only, hash-chained events, written inside the caller's transaction.

Each event's hash is SHA-256 over the RFC 8785 canonical JSON of its fields and the
previous event's hash, so changing, removing or reordering any stored event breaks
every hash after it. Writers lock the single `audit_head` row (on SQLite the
IMMEDIATE transaction already serialises writers), so the chain has one order and no
gaps even with many processes writing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import rfc8785
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from review.db import Database
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


def event_hash(
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
    """SHA-256 over the RFC 8785 canonical JSON of the event's fields.

    The payload enters as the SHA-256 of its stored text, so a large payload is hashed
    once by hashlib instead of being escaped again by the canonicaliser.
    """
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
    return hashlib.sha256(_RECORD_JSON.encode(record).encode()).hexdigest()


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
    lock. (Intake only inserts, so it may take it last: see review/intake.py.) On
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


class AgentStopped(Exception):
    """The guarded agent's kill switch is on (seen under the chain lock)."""

    def __init__(self, slug: str, reason: str):
        super().__init__(f"agent {slug} is stopped: {reason}")
        self.slug, self.reason = slug, reason


def record_events(
    session: Session,
    events: list[dict[str, Any]],
    *,
    guard_agent: int | None = None,
) -> list[dict[str, Any]]:
    """Append several events in order under one take of the chain lock.

    The chain lock is the single point where every state change in the service is
    ordered, so it is held for as few round trips as possible: one statement takes it
    (and, with `guard_agent`, locks and re-reads that agent's kill switch, raising
    AgentStopped if it is on), one writes the events and the new head (a single
    statement on PostgreSQL), then the caller commits. Payloads are serialised before.
    """
    head_table, events_table = AuditHead.__table__, AuditEvent.__table__
    for event in events:  # everything that needs no lock happens before taking it
        if event["actor_kind"] not in ACTOR_KINDS:
            raise ValueError(f"unknown actor kind {event['actor_kind']!r}")
    texts = [payload_json(event.get("payload") or {}) for event in events]
    conn = session.connection()  # Core on the session's connection: no ORM layer per statement
    lock = select(head_table.c.seq, head_table.c.hash).where(head_table.c.id == 1)
    if guard_agent is None:
        head_seq, head_hash = conn.execute(lock.with_for_update()).one()
    else:
        agents = Agent.__table__
        guarded = (
            lock.add_columns(agents.c.slug, agents.c.state, agents.c.state_reason)
            .join_from(head_table, agents, agents.c.id == guard_agent)
            # NO KEY UPDATE: the newest versions, without conflicting with the KEY SHARE lock
            # that inserting a deferral (a foreign key to the agent) takes on the agent row.
            .with_for_update(of=[head_table, agents], key_share=True)
        )
        head_seq, head_hash, slug, state, reason = conn.execute(guarded).one()
        if state == "killed":
            raise AgentStopped(slug, reason)
    rows = []
    for event, text in zip(events, texts, strict=True):
        row = {
            "seq": head_seq + 1,
            "at": event.get("at") or utcnow(),
            "actor_kind": event["actor_kind"],
            "actor_id": event["actor_id"],
            "event_type": event["event_type"],
            "agent": event.get("agent"),
            "deferral_id": event.get("deferral_id"),
            "payload": text,
            "prev_hash": head_hash,
        }
        row["hash"] = event_hash(**row)
        rows.append(row)
        head_seq, head_hash = row["seq"], row["hash"]
    move_head = update(head_table).where(head_table.c.id == 1)
    if conn.dialect.name == "postgresql":
        appended = insert(events_table).values(rows).cte("appended")
        conn.execute(move_head.values(seq=head_seq, hash=head_hash).add_cte(appended))
    else:
        conn.execute(insert(events_table), rows)
        conn.execute(move_head, {"seq": head_seq, "hash": head_hash})
    return rows


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
