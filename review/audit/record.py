"""An audit event's hashed record as text: what review/audit/hashing.py hashes.

Kept apart from hashing (which also places events and reads the models) so that the
verify worker (review/audit/walk.py) writes records without importing the database
layer: a process of its own starts in a fraction of the time.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

GENESIS_HASH = "0" * 64


def format_time(at: datetime) -> str:
    """`2026-11-21T10:00:00.000000Z` (UTC, microseconds), as hashed and exported."""
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


# JSON string escaping as json.dumps(ensure_ascii=False) does it (the C function).
json_string = json.encoder.encode_basestring


def _json_value(value: str | None) -> str:
    return "null" if value is None else json_string(value)


def record_text(
    seq: int,
    at: str,
    actor_kind: str,
    actor_id: str,
    event_type: str,
    agent: str | None,
    deferral_id: str | None,
    payload_sha256: str,
    prev_hash: str,
    shard: int = 0,
    shard_seq: int | None = None,
) -> str:
    """The RFC 8785 canonical JSON of an event's hashed record, written out directly.

    For this record (ASCII keys, written here in sorted order; strings, an integer within
    2^53 and nulls as values) RFC 8785 is byte for byte json.dumps with sorted keys, no
    spaces and no ASCII escaping, so each string is escaped by json's own C function
    and the record is one f-string: verifying a million events spends its time here
    (tests/test_audit_chain.py checks it against rfc8785 with hypothesis). `at` and
    `payload_sha256` are always ours (format_time, a hex digest) and need no escaping.
    A sharded event's record ends `,"shard":S,"shard_seq":P}` (both sort after `seq`).
    """
    text = (
        f'{{"actor_id":{_json_value(actor_id)},"actor_kind":{_json_value(actor_kind)},'
        f'"agent":{_json_value(agent)},"at":"{at}",'
        f'"deferral_id":{_json_value(deferral_id)},"event_type":{_json_value(event_type)},'
        f'"payload_sha256":"{payload_sha256}","prev_hash":{_json_value(prev_hash)},"seq":{seq}'
    )
    if shard_seq is None:
        return text + "}"
    return f'{text},"shard":{int(shard)},"shard_seq":{int(shard_seq)}}}'
