"""Signed checkpoints of the audit log: "its shards had N events, their heads' root R, at T".

The service signs `{"at", "root", "seq", "shards"}` (RFC 8785 canonical JSON): `root` is
the Merkle root (RFC 6962) over every shard's head, [shard, shard_seq, hash] in shard
order, which the checkpoint lists beside it, and `seq` counts the events of all shards.
(Checkpoints taken before shards, migration 0025, signed `{"at", "head", "seq"}` of the
single chain, now shard 0; both kinds verify.) It signs with an ed25519 key,
generated once under instance/ (or supplied with COUNTERSIGN_AUDIT_KEY_FILE). A
checkpoint is taken on a timer (every COUNTERSIGN_CHECKPOINT_INTERVAL seconds, when
there are new events) and by `audit checkpoint`. `audit verify` checks every one, so
removing the newest events (even with the head row rewritten to match) is caught: a
signed checkpoint names an event that is no longer there, or no longer the same.

Every checkpoint is also witnessed outside the database (review/audit/witness.py): a
file under instance/ and, if set, a URL. `verify_log` compares the chain with those
too, so an insider who drops the triggers and rewrites the events, the head and the
checkpoints table still fails against what was witnessed (README: "Threat model").

Anyone with the public key (on /audit, in every export) can check the signatures.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
)
from sqlalchemy import select
from sqlalchemy.orm import Session

from review.audit import witness
from review.audit.chain import chained_write
from review.audit.hashing import canonical_json, format_time, heads_root
from review.audit.verifier import check_witnessed, checkpoint_heads, signature_ok
from review.audit.verify import VerifyResult, read_heads, verify_chain
from review.models import AuditCheckpoint, utcnow
from review.services import Services

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SigningKey:
    private: Ed25519PrivateKey

    @property
    def public_raw(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def public_b64(self) -> str:
        """The public key as people copy it: base64 of the 32 raw bytes."""
        return base64.b64encode(self.public_raw).decode()

    @property
    def key_id(self) -> str:
        return hashlib.sha256(self.public_raw).hexdigest()


def load_key(path: str | Path) -> SigningKey:
    """The signing key at `path`, created (mode 0600) if there is none yet."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            pass
        else:
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an ed25519 private key")
    return SigningKey(loaded)


def cached_key(path: str | Path) -> SigningKey:
    """`load_key`, read once per process and path: the pages that show the public key and
    the timer that signs do not read the key file again on every request or tick.
    (Replacing the key file therefore needs a restart; `audit verify` reads it afresh.)"""
    return _cached_key(str(path))


@functools.lru_cache(maxsize=8)
def _cached_key(path: str) -> SigningKey:
    return load_key(path)


def message(seq: int, head: str, at: datetime, shards: int | None = None) -> bytes:
    """What is signed: the canonical JSON of the checkpoint's facts. Since shards,
    {at, root, seq, shards}: `head` is the Merkle root over the shard heads and `seq`
    counts every shard's events; before them, {at, head, seq} of the single chain."""
    if shards is None:
        return canonical_json({"at": format_time(at), "head": head, "seq": seq})
    return canonical_json({"at": format_time(at), "root": head, "seq": seq, "shards": shards})


def heads_of(c: AuditCheckpoint) -> list[list[Any]] | None:
    """The [shard, shard_seq, hash] heads a checkpoint lists (None: one from before shards)."""
    return None if c.heads is None else json.loads(c.heads)


def as_record(c: AuditCheckpoint) -> dict[str, Any]:
    """A checkpoint as the export, the witness and the offline verifier read it."""
    record = {
        "record": "checkpoint",
        "seq": c.seq,
        "at": format_time(c.at),
        "hash": c.head_hash,
        "key_id": c.key_id,
        "signature": c.signature,
    }
    heads = heads_of(c)
    if heads is not None:
        record["heads"] = heads
    return record


def signature_valid(public_raw: bytes, c: AuditCheckpoint) -> bool:
    """Its signature holds (and, since shards, its heads give the root it signed)."""
    return signature_ok(public_raw, as_record(c))


def take(
    svc: Services, *, force: bool = False, now: datetime | None = None, witnessed: bool = True
) -> AuditCheckpoint | None:
    """Sign the chain's head now; unless forced, only when it is due and there is news.

    Once committed it is witnessed (file, URL), unless `witnessed=False`: then the caller
    calls `witness.publish` itself (the CLI, to print what happened).
    """
    key = cached_key(svc.settings.audit_key_file)
    checkpoint = _sign_head(svc, key, force, now or utcnow())
    if checkpoint is not None and witnessed:
        for note in witness.publish(svc, checkpoint, key):
            log.info("checkpoint %d: %s", checkpoint.seq, note)
    return checkpoint


def _sign_head(
    svc: Services, key: SigningKey, force: bool, now: datetime
) -> AuditCheckpoint | None:
    with chained_write(svc.db) as session:  # every shard's lock: the heads hold still
        heads = read_heads(session)
        total = sum(place for place, _hash in heads.values())
        last = latest(session)
        if total == 0:
            return None
        if last is not None and last.seq == total:
            return None  # nothing new since the last one (a head only moves forward)
        interval = timedelta(seconds=svc.settings.checkpoint_interval)
        if not force and last is not None and now - last.at < interval:
            return None
        checkpoint = signed(key, heads, now)
        session.add(checkpoint)
        session.flush()
        return checkpoint


def signed(key: SigningKey, heads: dict[int, tuple[int, str]], now: datetime) -> AuditCheckpoint:
    """A checkpoint of these shard heads (shard -> (its length, its last hash)), signed."""
    listed = [[shard, place, hash_] for shard, (place, hash_) in sorted(heads.items())]
    root = heads_root([(s, p, h) for s, p, h in listed])
    total = sum(place for _s, place, _h in listed)
    signature = base64.b64encode(key.private.sign(message(total, root, now, len(listed))))
    return AuditCheckpoint(
        seq=total,
        head_hash=root,
        at=now,
        key_id=key.key_id,
        signature=signature.decode(),
        heads=json.dumps(listed, separators=(",", ":")),
    )


def latest(session: Session) -> AuditCheckpoint | None:
    return session.scalar(select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc()).limit(1))


def all_checkpoints(session: Session) -> list[AuditCheckpoint]:
    return list(session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.id)))


def places(record: dict[str, Any]) -> set[tuple[int, int]]:
    return {(shard, place) for shard, place, _hash in checkpoint_heads(record)}


def verify_log(
    session: Session,
    key: SigningKey,
    witnessed: Sequence[tuple[str, dict]] = (),
    jobs: int = 1,
) -> VerifyResult:
    """`audit verify`: every shard's chain, every checkpoint the database holds against
    them, then every witnessed checkpoint (`witnessed`: (where, record) pairs from the
    witness file and the auditor's trusted copies) against the chains and the database's
    checkpoints. `jobs`: processes for the hashing (review/audit/parallel_verify.py).
    """
    stored = all_checkpoints(session)
    records = [as_record(c) for c in stored]
    remember = set().union(*(places(r) for r in records), *(places(r) for _w, r in witnessed))
    result = verify_chain(session, remember=remember, jobs=jobs)
    if not result.ok:
        return result
    hashes = result.hashes or {}
    lengths = {shard: place for shard, (place, _hash) in (result.heads or {}).items()}
    for row, c in zip(stored, records, strict=True):
        where = f"checkpoint {row.id} (signed {format_time(row.at)}, {c['seq']} events)"
        if c["key_id"] != key.key_id:
            return _bad(
                result, c["seq"], f"{where} was signed by another key ({c['key_id'][:16]}…)"
            )
        if not signature_ok(key.public_raw, c):
            return _bad(
                result, c["seq"], f"{where} has a bad signature (the checkpoint was edited)"
            )
        for shard, place, hash_ in checkpoint_heads(c):
            length = lengths.get(shard, 0)
            if place > length:
                chain = "the chain" if shard == 0 else f"shard {shard}"
                problem = f"{where}, but {chain} ends at {length} (events removed from the end)"
                return _bad(result, length + 1, problem)
            if place and hashes.get((shard, place)) != hash_:
                problem = f"{where} names another event here (the log was rewritten)"
                return _bad(result, place, problem)
    held = {(c["seq"], c["signature"]) for c in records}
    problem = check_witnessed(list(witnessed), key.public_raw, lengths, hashes, held, "database")
    if problem is not None:
        return _bad(result, *problem)
    return result


def _bad(result: VerifyResult, seq: int, problem: str) -> VerifyResult:
    return VerifyResult(False, result.count, result.head, seq, problem)
