"""Hashing the audit chain: each event's hash, as every writer and verifier computes it.

An event's hash is SHA-256 over the RFC 8785 canonical JSON of its fields, its payload
entering as the SHA-256 of its stored text, its global `seq`, its shard and place in
that shard's chain (`shard`, `shard_seq`), and the previous event's hash in its shard.
Events from before shards (migration 0025) have no `shard_seq` and hash without both.
Python (here), PostgreSQL's `countersign_append` (migration 0025, which finishes
`chain_prefix` with `link`'s arithmetic) and the offline verifier
(review/audit/verifier.py) all agree.

Adding an event field (a column of `audit_events`) means changing, together:

1. review/models/audit.py `AuditEvent`, and a new migration that adds the column.
2. `unchained` here: the row every writer stores. `record_event` (review/audit/chain.py)
   names its fields as parameters. SQLite's append refuses a row without the column
   (review/driver_statements.py); PostgreSQL's (`_PG_APPEND`, jsonb_populate_recordset)
   stores NULL, silently if the column is nullable.
3. PostgreSQL's `countersign_append`, which reads each field by name (`event->>'...'`)
   and names the columns it inserts: a new migration with `CREATE OR REPLACE FUNCTION
   countersign_append` (never edit 0025, which databases have already run).
4. The hash, since every stored field is hashed (an unhashed one could be edited
   unnoticed): `record_text` (review/audit/record.py), `event_hash_record` and
   `stored_event_hash` here; review/audit/verify.py (`EVENT_COLUMNS`);
   review/audit/walk.py (`_HASH_INPUTS`, `verify_segment`'s f-string, `_record_hash`);
   review/audit/export.py (`records`, `CSV_COLUMNS`,
   the `HASHING` text, `VERSION`); review/audit/verifier.py (`event_hash`, `read_csv`);
   README's "The audit chain". Its key must sort before `prev_hash` (`chain_prefix` and
   the function append `prev_hash`, `seq`, `shard` and `shard_seq` last), and events
   already stored must still verify (hash the key only where the event has it, as
   `shard_seq` does, or version the record).
5. tests/test_intake_function.py checks the model, `unchained`, the function's reads and
   insert, the hashed record and the export against each other.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

import rfc8785

from review.audit.record import (  # noqa: F401  (re-exported: the hash's names live here)
    GENESIS_HASH,
    _json_value,
    format_time,
    json_string,
    record_text,
)
from review.models import utcnow

ACTOR_KINDS = ("user", "agent", "system")


def canonical_json(value: Any) -> bytes:
    """RFC 8785's canonical JSON of `value`.

    For a value made only of dicts with ASCII keys, lists, strings, integers within
    2^53, booleans and None (a deferral's action, a checkpoint's statement), RFC 8785 is
    byte for byte json.dumps with sorted keys, no spaces and no ASCII escaping (ASCII
    keys sort the same by UTF-16 code unit and by code point; the escapes are the same),
    which the C encoder writes: intake's action digest spent most of its time in the
    rfc8785 package's Python. Anything else (a float, a non-ASCII key, a larger integer,
    a tuple, a lone surrogate) is written, or refused, by rfc8785 itself.
    """
    if _plainly_canonical(value):
        try:
            text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            return text.encode()
        except UnicodeEncodeError:  # a lone surrogate: rfc8785 refuses it
            pass
    return rfc8785.dumps(value)


_SAFE_INTEGER = 2**53 - 1  # RFC 8785: beyond it an integer is not exact as a double


def _plainly_canonical(value: Any) -> bool:
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return -_SAFE_INTEGER <= value <= _SAFE_INTEGER
    if kind is dict:
        return all(
            type(k) is str and k.isascii() and _plainly_canonical(v) for k, v in value.items()
        )
    if kind is list:
        return all(_plainly_canonical(v) for v in value)
    return False


def payload_json(value: Any) -> str:
    """An event's payload as stored and hashed: deterministic JSON (sorted keys, no spaces).

    The chain hashes this text as it is stored, so a verifier never re-serialises it; the
    C json encoder is several times faster than RFC 8785 on large payloads.
    """
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


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
    shard: int = 0,
    shard_seq: int | None = None,
) -> str:
    """The text `event_hash` hashes: the event's fields, payload by its SHA-256.

    `shard_seq` None: an event of the single chain before shards (migration 0025),
    hashed without its shard; otherwise its shard and place in that shard's chain too.
    """
    return record_text(
        seq,
        format_time(at),
        actor_kind,
        actor_id,
        event_type,
        agent,
        deferral_id,
        hashlib.sha256(payload.encode()).hexdigest(),
        prev_hash,
        shard,
        shard_seq,
    )


def chain_prefix(**fields: Any) -> str:
    """The event's hashed record up to its link: `event_hash` is the SHA-256 of

        prefix + prev_hash + '","seq":' + str(seq) + ',"shard":' + str(shard)
               + ',"shard_seq":' + str(shard_seq) + '}'

    (`prev_hash`, `seq`, `shard` and `shard_seq` sort last among the record's keys).
    PostgreSQL's `countersign_append` (migration 0025) finishes the hash under the
    shard's lock from this.
    """
    text = event_hash_record(seq=0, prev_hash="", **fields)
    return text[: text.rindex('"prev_hash":"') + len('"prev_hash":"')]


def link(prefix: str, prev_hash: str, seq: int, shard: int, shard_seq: int) -> str:
    """An event's hash from its `chain_prefix`, the previous hash in its shard, its
    sequence number, its shard and its place in the shard's chain."""
    tail = f'{prev_hash}","seq":{seq},"shard":{shard},"shard_seq":{shard_seq}}}'
    return hashlib.sha256(f"{prefix}{tail}".encode()).hexdigest()


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
        shard=e.shard,
        shard_seq=e.shard_seq,
    )


# --- shards and the Merkle root over their heads ------------------------------------


def shard_key(deferral_id: str | None, agent: str | None) -> str | None:
    """What places an event in a shard: its deferral (so a deferral's events share one
    shard's chain, in order), else its agent, else nothing (shard 0)."""
    return deferral_id or agent


def shard_of(key: str | None, shards: int) -> int:
    """The shard of `key` among `shards` chains: the first 8 bytes of its SHA-256, mod."""
    if not key or shards <= 1:
        return 0
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % shards


def head_leaf(shard: int, shard_seq: int, hash_: str) -> bytes:
    """One shard's head as a Merkle leaf: the RFC 8785 JSON of its three facts."""
    return f'{{"hash":"{hash_}","shard":{int(shard)},"shard_seq":{int(shard_seq)}}}'.encode()


def merkle_root(leaves: list[bytes]) -> str:
    """RFC 6962's Merkle tree hash (SHA-256; leaves prefixed 0x00, nodes 0x01; split at
    the largest power of two below n), hex. The root every checkpoint signs over the
    shard heads, in shard order (review/audit/verifier.py computes the same)."""
    if not leaves:
        return hashlib.sha256(b"").hexdigest()
    return _mth(leaves).hex()


def _mth(leaves: list[bytes]) -> bytes:
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    split = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + _mth(leaves[:split]) + _mth(leaves[split:])).digest()


def heads_root(heads: list[tuple[int, int, str]]) -> str:
    """The Merkle root over (shard, shard_seq, hash) heads, which must be shards 0..n-1."""
    ordered = sorted(heads)
    if [h[0] for h in ordered] != list(range(len(ordered))):
        raise ValueError("shard heads must be shards 0..n-1, each once")
    return merkle_root([head_leaf(*h) for h in ordered])
