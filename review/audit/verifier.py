#!/usr/bin/env python3
"""Verify a Countersign audit export on your own machine.

    python3 verifier.py export.jsonl --public-key BASE64
    python3 verifier.py export.csv --public-key BASE64 --trusted my-witness-copy.jsonl

Needs Python 3.9+ and the `cryptography` package (ed25519), nothing else: copy this
one file. Get the public key from the service's /audit page (or from whoever runs
it), not only from the export: a key taken from the file itself proves that the file
is consistent, not that the service signed it. Without --public-key the export's own
key is used, and the output says so.

The log is N hash chains (shards; one before shards existed). It checks that each
shard's events are numbered 1, 2, 3... with no gap, that each names the hash of the one
before in its shard, that each hash matches the event's content, that every
checkpoint's signature holds, that the shard heads it lists give the Merkle root it
signed, and that each of them is an event of the export with that exact hash, and that
the file ends with its end record (so a cut-off file is caught) and every shard ends at
the head that record names. Exit 0 and `OK ...`, or exit 1 and the first problem.

--trusted FILE (any number of times) names your own copy of signed checkpoints: a copy
of the service's witness file (instance/audit-witness.jsonl), what its witness URL
received, or an earlier export. Each of its checkpoints must be signed by the key, the
export must reach it and agree with its head, and the export must still hold it; so an
export rebuilt by someone who also controls the service's database, its files and its
signing key still fails against checkpoints you kept before they did it.

The hashes are SHA-256 over RFC 8785 canonical JSON; the root over shard heads is
RFC 6962's Merkle tree hash. For the records hashed here (flat
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
    """An event's hash. Events since shards (`shard_seq` set) hash their shard and their
    place in it too; those of the single chain before (export version 1, or no
    `shard_seq`) do not."""
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
    if e.get("shard_seq") is not None:
        record["shard"] = e["shard"]
        record["shard_seq"] = e["shard_seq"]
    return hashlib.sha256(canonical(record)).hexdigest()


def merkle_root(leaves: list) -> str:
    """RFC 6962's Merkle tree hash over `leaves` (bytes), SHA-256, hex."""

    def mth(items: list) -> bytes:
        if len(items) == 1:
            return hashlib.sha256(b"\x00" + items[0]).digest()
        split = 1 << ((len(items) - 1).bit_length() - 1)
        return hashlib.sha256(b"\x01" + mth(items[:split]) + mth(items[split:])).digest()

    return mth(leaves).hex() if leaves else hashlib.sha256(b"").hexdigest()


def heads_root(heads: list) -> str | None:
    """The Merkle root over shard heads [[shard, shard_seq, hash], ...] (each leaf the
    RFC 8785 JSON of {hash, shard, shard_seq}, in shard order); None unless the heads
    are shards 0..n-1, each once."""
    ordered = sorted((int(s), int(p), str(h)) for s, p, h in heads)
    if [s for s, _p, _h in ordered] != list(range(len(ordered))):
        return None
    leaves = [canonical({"hash": h, "shard": s, "shard_seq": p}) for s, p, h in ordered]
    return merkle_root(leaves)


def checkpoint_heads(checkpoint: dict) -> list:
    """The (shard, shard_seq, hash) heads a checkpoint commits to: every shard's since
    shards; before them, the single chain's (shard 0: `seq` events ending in `hash`)."""
    if checkpoint.get("heads") is not None:
        return [(int(s), int(p), h) for s, p, h in checkpoint["heads"]]
    return [(0, checkpoint["seq"], checkpoint["hash"])]


def signed_message(checkpoint: dict) -> bytes:
    """What a checkpoint's signature covers: since shards, {at, root, seq, shards} (its
    `hash` is the root); before them, {at, head, seq}."""
    if checkpoint.get("heads") is not None:
        return canonical(
            {
                "at": checkpoint["at"],
                "root": checkpoint["hash"],
                "seq": checkpoint["seq"],
                "shards": len(checkpoint["heads"]),
            }
        )
    return canonical({"at": checkpoint["at"], "head": checkpoint["hash"], "seq": checkpoint["seq"]})


def read_jsonl(path: str) -> Iterator[dict]:
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError:
                    raise SystemExit(f"BAD line {number}: not JSON") from None


def _int_or_none(text: str) -> int | None:
    return int(text) if text else None


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
                    "shard": int(row.get("shard") or 0),
                    "shard_seq": _int_or_none(row.get("shard_seq") or ""),
                }
            elif kind == "checkpoint":
                heads = row.get("heads") or ""
                yield {
                    "record": "checkpoint",
                    "seq": int(row["seq"]),
                    "at": row["at"],
                    "hash": row["hash"],
                    "key_id": row["key_id"],
                    "signature": row["signature"],
                    "heads": json.loads(heads) if heads else None,
                }


def signature_ok(public_key: bytes, checkpoint: dict) -> bool:
    """The signature holds, and (since shards) the heads listed give the signed root."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if checkpoint.get("heads") is not None:
        try:
            if heads_root(checkpoint["heads"]) != checkpoint["hash"]:
                return False
        except (TypeError, ValueError):
            return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(
            base64.b64decode(checkpoint["signature"]), signed_message(checkpoint)
        )
    except (InvalidSignature, ValueError):
        return False
    return True


def _heads_field_ok(heads: object) -> bool:
    return heads is None or (
        isinstance(heads, list)
        and all(
            isinstance(h, list)
            and len(h) == 3
            and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in h[:2])
            and isinstance(h[2], str)
            for h in heads
        )
    )


def read_checkpoints(path: str) -> list[tuple[str, dict]]:
    """The checkpoint records of a JSON Lines file (a witness file, a copy of one, or an
    export), each with where it was found. Other records are skipped; a line that is not
    JSON, or a checkpoint record missing a field, is a ValueError naming the line."""
    found = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                raise ValueError(f"{path} line {number}: not JSON") from None
            if not isinstance(record, dict) or record.get("record") != "checkpoint":
                continue
            seq = record.get("seq")
            fields = ("at", "hash", "key_id", "signature")
            if not (
                isinstance(seq, int)
                and not isinstance(seq, bool)
                and seq >= 1
                and all(isinstance(record.get(k), str) for k in fields)
                and _heads_field_ok(record.get("heads"))
            ):
                raise ValueError(f"{path} line {number}: not a checkpoint record")
            found.append((f"{path} line {number}", record))
    return found


def place_name(shard: int, place: int) -> str:
    return str(place) if shard == 0 else f"{place} of shard {shard}"


def check_witnessed(
    witnessed: list[tuple[str, dict]],
    public_key: bytes,
    lengths: dict[int, int],
    hashes: dict[tuple[int, int], str],
    held: set[tuple[int, str]],
    holder: str,
) -> tuple[int, str] | None:
    """The first way a log disagrees with checkpoints kept outside it, or None.

    `witnessed`: (where, record) pairs from read_checkpoints. `lengths`: each shard's
    length in the log; `hashes`: the log's hash at each witnessed (shard, shard_seq).
    `held`: (seq, signature) of the checkpoints the log itself holds. `holder`:
    "database" or "export", for messages. Returns (the number to name: a place in a
    shard's chain, or a checkpoint's seq; the problem). The service's `audit verify`
    uses this too, so both apply the same rules.
    """
    key_id = hashlib.sha256(public_key).hexdigest()
    for where, c in witnessed:
        if c["key_id"] != key_id:
            return c["seq"], f"{where}: checkpoint {c['seq']} was signed by another key"
        if not signature_ok(public_key, c):
            return c["seq"], f"{where}: the signature of checkpoint {c['seq']} does not hold"
    ordered = sorted(witnessed, key=lambda pair: pair[1]["seq"])
    for where, c in ordered:
        for shard, place, hash_ in checkpoint_heads(c):
            length = lengths.get(shard, 0)
            if place > length:
                chain = "a chain" if shard == 0 else f"shard {shard}"
                return length + 1, (
                    f"tail cut: {where} witnessed {chain} of {place} events, the {holder}'s "
                    f"ends at {length} (events removed from the end)"
                )
            if place and hashes.get((shard, place)) != hash_:
                return place, (
                    f"chain disagrees with witnessed head at {place_name(shard, place)} ({where})"
                )
    for where, c in ordered:
        if (c["seq"], c["signature"]) not in held:
            return c["seq"], f"{holder} lost checkpoint {c['seq']} (witnessed in {where})"
    return None


def verify(
    records: Iterator[dict],
    public_key_b64: str | None,
    trusted: list[tuple[str, dict]] | None = None,
) -> tuple[bool, str]:
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
    trusted = trusted or []
    # each shard's chain: shard -> (its last place, its last hash)
    ends: dict[int, tuple[int, str]] = {}
    count, hashes, checkpoints, end = 0, {}, [], None
    for r in records:
        kind = r.get("record")
        if end is not None:
            return False, "BAD: records after the end record"
        if kind == "event":
            shard, shard_seq = r.get("shard") or 0, r.get("shard_seq")
            place = r["seq"] if shard_seq is None else shard_seq
            if shard_seq is None and shard != 0:
                return False, f"BAD event {r['seq']}: an event from before shards in shard {shard}"
            last, prev = ends.get(shard, (0, GENESIS))
            if place != last + 1:
                return False, (
                    f"BAD event {place_name(shard, last + 1)}: missing (found {place} next)"
                )
            if r["prev_hash"] != prev:
                return False, f"BAD event {r['seq']}: previous-hash link does not match"
            if event_hash(r) != r["hash"]:
                return False, f"BAD event {r['seq']}: content does not match its hash (edited)"
            hashes[(shard, place)] = r["hash"]
            ends[shard] = (place, r["hash"])
            count += 1
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
    for shard, place, hash_ in end.get("heads") or []:
        if ends.get(shard, (0, GENESIS)) != (place, hash_):
            found = ends.get(shard, (0, GENESIS))[0]
            return False, f"BAD: shard {shard} ends at {found}, the end record says {place}"
    lengths = {shard: place for shard, (place, _h) in ends.items()}
    for c in checkpoints:
        where = f"checkpoint at {c['at']} ({c['seq']} events)"
        if c["key_id"] != key_id:
            return False, f"BAD {where}: signed by another key"
        if not signature_ok(public_key, c):
            return False, f"BAD {where}: the signature does not hold"
        for shard, place, hash_ in checkpoint_heads(c):
            if place > lengths.get(shard, 0):
                length = lengths.get(shard, 0)
                shard_name = "" if shard == 0 else f" shard {shard}"
                return (
                    False,
                    f"BAD {where}: the export{shard_name} ends at {length} (events removed)",
                )
            if place and hashes.get((shard, place)) != hash_:
                name = place_name(shard, place)
                return False, f"BAD {where}: event {name} is not the one that was signed"
    held = {(c["seq"], c["signature"]) for c in checkpoints}
    problem = check_witnessed(trusted, public_key, lengths, hashes, held, "export")
    if problem is not None:
        return False, f"BAD event {problem[0]}: {problem[1]}"
    whose = "the given key" if public_key_b64 else "the export's own key (pass --public-key)"
    shards = sorted({s for s, _p, _h in end.get("heads") or []} | set(ends)) or [0]
    if len(shards) > 1:
        heads = [(s, *ends.get(s, (0, GENESIS))) for s in shards]
        summary = (
            f"{count} events, head {heads_root(heads)} "
            f"(the Merkle root over {len(shards)} shards' heads)"
        )
    else:
        summary = f"{count} events, head {ends.get(0, (0, GENESIS))[1]}"
    message = f"OK {summary}, {len(checkpoints)} checkpoints signed by {whose}"
    if trusted:
        message += f"; {len(trusted)} trusted checkpoints agree"
    return True, message


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify a Countersign audit export.")
    parser.add_argument("export", help="the .jsonl or .csv file")
    parser.add_argument("--public-key", help="base64 ed25519 public key, from /audit")
    parser.add_argument(
        "--trusted",
        action="append",
        default=[],
        metavar="FILE",
        help="your own copy of signed checkpoints (witness file or an earlier export)",
    )
    args = parser.parse_args(argv)
    trusted = []
    for path in args.trusted:
        try:
            trusted.extend(read_checkpoints(path))
        except (OSError, ValueError) as exc:
            print(f"BAD trusted file: {exc}")
            return 1
    reader = read_csv if args.export.endswith(".csv") else read_jsonl
    ok, message = verify(reader(args.export), args.public_key, trusted)
    print(message)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
