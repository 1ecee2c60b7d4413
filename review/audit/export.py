"""Exporting the audit log: JSONL or CSV, streamed, with its checkpoints and public key.

The export is what `review/audit/verifier.py` (standard library plus `cryptography`)
checks on an auditor's own machine. It holds, in order: a header (format, the public
key and its id, how hashes are computed), every event up to the head as it was when
the export began (payloads exactly as stored and hashed), the signed checkpoints taken
by then, and an end record with the count, so a cut-off file is noticed too.

Events are read in keyset pages of 5,000, so memory stays flat however long the log.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy.orm import Session

from review.audit.checkpoints import SigningKey, all_checkpoints
from review.audit.hashing import format_time
from review.audit.verify import iter_rows
from review.models import AuditHead, utcnow

FORMAT = "countersign-audit"
VERSION = 1
HASHING = (
    "hash = sha256 of the RFC 8785 JSON of {seq, at, actor_kind, actor_id, event_type, "
    "agent, deferral_id, payload_sha256, prev_hash}, where payload_sha256 is the sha256 "
    "of the payload text as exported; the first prev_hash is 64 zeros. A checkpoint "
    "signs the RFC 8785 JSON of {at, head, seq} with ed25519."
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
    "key_id",
    "signature",
]


def records(session: Session, key: SigningKey) -> Iterator[dict[str, Any]]:
    """Header, events, checkpoints, end: the export as dicts, read lazily."""
    head = session.get(AuditHead, 1)
    last_seq = head.seq if head is not None else 0
    checkpoints = [c for c in all_checkpoints(session) if c.seq <= last_seq]
    yield {
        "record": "header",
        "format": FORMAT,
        "version": VERSION,
        "exported_at": format_time(utcnow()),
        "public_key": key.public_b64,
        "key_id": key.key_id,
        "hashing": HASHING,
    }
    count = 0
    for e in iter_rows(session, batch=5000):
        if e.seq > last_seq:
            break  # appended after the export began: the next export has it
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
        }
    for c in checkpoints:
        yield {
            "record": "checkpoint",
            "seq": c.seq,
            "at": format_time(c.at),
            "hash": c.head_hash,
            "key_id": c.key_id,
            "signature": c.signature,
        }
    yield {"record": "end", "events": count, "checkpoints": len(checkpoints)}


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
        writer.writerow(row)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
