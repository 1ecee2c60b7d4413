#!/usr/bin/env python3
"""Verify a Countersign audit export on your own machine.

    python3 verifier.py export.jsonl --public-key BASE64
    python3 verifier.py export.csv --public-key BASE64

Needs Python 3.9+ and the `cryptography` package (ed25519), nothing else: copy this
one file. Get the public key from the service's /audit page (or from whoever runs
it), not only from the export: a key taken from the file itself proves that the file
is consistent, not that the service signed it. Without --public-key the export's own
key is used, and the output says so.

It checks that events are numbered 1, 2, 3... with no gap, that each names the hash of
the one before, that each hash matches the event's content, that every checkpoint's
signature holds and names an event of the export with that exact hash, and that the
file ends with its end record (so a cut-off file is caught). Exit 0 and `OK ...`, or
exit 1 and the first problem.

The hashes are SHA-256 over RFC 8785 canonical JSON. For the records hashed here (flat
objects of short ASCII keys, strings, integers and nulls), RFC 8785 is exactly Python's
json.dumps with sorted keys, no spaces and ensure_ascii=False, which this file uses.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import json
import sys
from collections.abc import Iterator

GENESIS = "0" * 64


def canonical(value: dict) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def event_hash(e: dict) -> str:
    record = {
        "seq": e["seq"],
        "at": e["at"],
        "actor_kind": e["actor_kind"],
        "actor_id": e["actor_id"],
        "event_type": e["event_type"],
        "agent": e["agent"],
        "deferral_id": e["deferral_id"],
        "payload_sha256": hashlib.sha256(e["payload"].encode()).hexdigest(),
        "prev_hash": e["prev_hash"],
    }
    return hashlib.sha256(canonical(record)).hexdigest()


def read_jsonl(path: str) -> Iterator[dict]:
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError:
                    raise SystemExit(f"BAD line {number}: not JSON") from None


def read_csv(path: str) -> Iterator[dict]:
    csv.field_size_limit(sys.maxsize)
    with open(path, encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            kind = row["record"]
            if kind == "header":
                yield {"record": "header", **json.loads(row["payload"])}
            elif kind == "end":
                yield json.loads(row["payload"])
            elif kind == "event":
                yield {
                    "record": "event",
                    "seq": int(row["seq"]),
                    "at": row["at"],
                    "actor_kind": row["actor_kind"],
                    "actor_id": row["actor_id"],
                    "event_type": row["event_type"],
                    "agent": row["agent"] or None,
                    "deferral_id": row["deferral_id"] or None,
                    "payload": row["payload"],
                    "prev_hash": row["prev_hash"],
                    "hash": row["hash"],
                }
            elif kind == "checkpoint":
                yield {
                    "record": "checkpoint",
                    "seq": int(row["seq"]),
                    "at": row["at"],
                    "hash": row["hash"],
                    "key_id": row["key_id"],
                    "signature": row["signature"],
                }


def signature_ok(public_key: bytes, checkpoint: dict) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    signed = canonical(
        {"at": checkpoint["at"], "head": checkpoint["hash"], "seq": checkpoint["seq"]}
    )
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(
            base64.b64decode(checkpoint["signature"]), signed
        )
    except (InvalidSignature, ValueError):
        return False
    return True


def verify(records: Iterator[dict], public_key_b64: str | None) -> tuple[bool, str]:
    header = next(records, None)
    if (
        not header
        or header.get("record") != "header"
        or header.get("format") != "countersign-audit"
    ):
        return False, "BAD: not a Countersign audit export (no header)"
    key_b64 = public_key_b64 or header["public_key"]
    try:
        public_key = base64.b64decode(key_b64, validate=True)
    except ValueError:
        return False, "BAD: the public key is not base64"
    key_id = hashlib.sha256(public_key).hexdigest()
    expected, prev, count, hashes, checkpoints, end = 1, GENESIS, 0, {}, [], None
    for r in records:
        kind = r.get("record")
        if end is not None:
            return False, "BAD: records after the end record"
        if kind == "event":
            if r["seq"] != expected:
                return False, f"BAD event {expected}: missing (found {r['seq']} next)"
            if r["prev_hash"] != prev:
                return False, f"BAD event {r['seq']}: previous-hash link does not match"
            if event_hash(r) != r["hash"]:
                return False, f"BAD event {r['seq']}: content does not match its hash (edited)"
            hashes[r["seq"]] = r["hash"]
            prev, expected, count = r["hash"], expected + 1, count + 1
        elif kind == "checkpoint":
            checkpoints.append(r)
        elif kind == "end":
            end = r
        else:
            return False, f"BAD: unknown record {kind!r}"
    if end is None:
        return False, f"BAD: the export is cut off after {count} events (no end record)"
    if end.get("events") != count:
        return False, f"BAD: the end record says {end.get('events')} events, the file has {count}"
    for c in checkpoints:
        where = f"checkpoint at {c['at']} ({c['seq']} events)"
        if c["key_id"] != key_id:
            return False, f"BAD {where}: signed by another key"
        if not signature_ok(public_key, c):
            return False, f"BAD {where}: the signature does not hold"
        if c["seq"] > count:
            return False, f"BAD {where}: the export ends at {count} (events removed)"
        if hashes.get(c["seq"]) != c["hash"]:
            return False, f"BAD {where}: event {c['seq']} is not the one that was signed"
    whose = "the given key" if public_key_b64 else "the export's own key (pass --public-key)"
    return True, f"OK {count} events, head {prev}, {len(checkpoints)} checkpoints signed by {whose}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify a Countersign audit export.")
    parser.add_argument("export", help="the .jsonl or .csv file")
    parser.add_argument("--public-key", help="base64 ed25519 public key, from /audit")
    args = parser.parse_args(argv)
    reader = read_csv if args.export.endswith(".csv") else read_jsonl
    ok, message = verify(reader(args.export), args.public_key)
    print(message)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
