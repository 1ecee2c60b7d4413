"""Exporting the audit log: JSONL or CSV, streamed, with its checkpoints and public key.

The export is what `review/audit/verifier.py` (standard library plus `cryptography`)
checks on an auditor's own machine. It holds, in order: a header (format, the public
key and its id, how hashes are computed, how many shards), every event up to the shard
heads as they were when the export began (payloads exactly as stored and hashed, each
with its shard and place), the signed checkpoints taken by then (with the heads they
list), and an end record with the count and every shard's head, so a cut-off file is
noticed too.

Events are read in keyset pages of 5,000, so memory stays flat however long the log.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy.orm import Session

from review.audit.checkpoints import SigningKey, all_checkpoints, as_record
from review.audit.hashing import format_time
from review.audit.verifier import checkpoint_heads
from review.audit.verify import iter_rows, read_heads
from review.models import utcnow

FORMAT = "countersign-audit"
VERSION = 2
HASHING = (
    "The log is several hash chains (shards). hash = sha256 of the RFC 8785 JSON of "
    "{seq, at, actor_kind, actor_id, event_type, agent, deferral_id, payload_sha256, "
    "prev_hash, shard, shard_seq}, where payload_sha256 is the sha256 of the payload text "
    "as exported and prev_hash is the hash of the event before in the same shard (64 "
    "zeros for a shard's first); events from before shards have no shard_seq and hash "
    "without shard and shard_seq. A checkpoint signs the RFC 8785 JSON of {at, root, seq, "
    "shards} with ed25519, root being RFC 6962's Merkle tree hash over its heads' RFC 8785 "
    "JSON {hash, shard, shard_seq} in shard order (before shards: {at, head, seq})."
)
CSV_COLUMNS = [
    "record",
    "seq",
    "at",
    "actor_kind",
    "actor_id",
    "event_type",
    "agent",
    "deferral_id",
    "payload",
    "prev_hash",
    "hash",
    "shard",
    "shard_seq",
    "key_id",
    "signature",
    "heads",
]


def records(session: Session, key: SigningKey) -> Iterator[dict[str, Any]]:
    """Header, events, checkpoints, end: the export as dicts, read lazily.

    Every shard's head is read first and bounds the export, so events appended while it
    runs are left for the next; events come in global seq order (each shard's in its
    own order), and the end record names each shard's head.
    """
    heads = read_heads(session)
    bound = {shard: place for shard, (place, _hash) in heads.items()}
    checkpoints = [
        as_record(c)
        for c in all_checkpoints(session)
        if all(place <= bound.get(shard, 0) for shard, place, _h in checkpoint_heads(as_record(c)))
    ]
    yield {
        "record": "header",
        "format": FORMAT,
        "version": VERSION,
        "exported_at": format_time(utcnow()),
        "public_key": key.public_b64,
        "key_id": key.key_id,
        "hashing": HASHING,
        "shards": len(heads),
    }
    count = 0
    for e in iter_rows(session, batch=5000):
        place = e.seq if e.shard_seq is None else e.shard_seq
        if place > bound.get(e.shard, 0):
            continue  # appended after the export began: the next export has it
        count += 1
        yield {
            "record": "event",
            "seq": e.seq,
            "at": format_time(e.at),
            "actor_kind": e.actor_kind,
            "actor_id": e.actor_id,
            "event_type": e.event_type,
            "agent": e.agent,
            "deferral_id": e.deferral_id,
            "payload": e.payload,
            "prev_hash": e.prev_hash,
            "hash": e.hash,
            "shard": e.shard,
            "shard_seq": e.shard_seq,
        }
    yield from checkpoints
    yield {
        "record": "end",
        "events": count,
        "checkpoints": len(checkpoints),
        "heads": [[shard, place, hash_] for shard, (place, hash_) in sorted(heads.items())],
    }


def jsonl(session: Session, key: SigningKey) -> Iterator[str]:
    for record in records(session, key):
        yield json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


def csv_lines(session: Session, key: SigningKey) -> Iterator[str]:
    """One CSV row per record; header, checkpoint and end facts go in the columns that fit."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for record in records(session, key):
        row = dict(record)
        if record["record"] == "header":
            row = {
                "record": "header",
                "payload": json.dumps(
                    {k: v for k, v in record.items() if k != "record"}, ensure_ascii=False
                ),
                "key_id": record["key_id"],
            }
        elif record["record"] == "end":
            row = {"record": "end", "seq": record["events"], "payload": json.dumps(record)}
        elif record["record"] == "checkpoint" and "heads" in record:
            row["heads"] = json.dumps(record["heads"], separators=(",", ":"))
        writer.writerow(row)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
