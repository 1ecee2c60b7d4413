"""Signed checkpoints of the audit chain: "it had N events, ending in H, at T".

The service signs `{"at", "head", "seq"}` (RFC 8785 canonical JSON) with an ed25519 key,
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
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from sqlalchemy import select
from sqlalchemy.orm import Session

from review.audit import witness
from review.audit.chain import chained_write
from review.audit.hashing import canonical_json, format_time
from review.audit.verifier import check_witnessed
from review.audit.verify import VerifyResult, verify_chain
from review.models import AuditCheckpoint, AuditHead, utcnow
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


def message(seq: int, head: str, at: datetime) -> bytes:
    """What is signed: the canonical JSON of the checkpoint's three facts."""
    return canonical_json({"at": format_time(at), "head": head, "seq": seq})


def signature_valid(public_raw: bytes, seq: int, head: str, at: datetime, signature: str) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(
            base64.b64decode(signature), message(seq, head, at)
        )
    except (InvalidSignature, ValueError):
        return False
    return True


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
    with chained_write(svc.db) as session:
        head = session.get(AuditHead, 1)
        last = latest(session)
        if head is None or head.seq == 0:
            return None
        if last is not None and last.seq == head.seq:
            return None  # nothing new since the last one
        interval = timedelta(seconds=svc.settings.checkpoint_interval)
        if not force and last is not None and now - last.at < interval:
            return None
        signature = base64.b64encode(key.private.sign(message(head.seq, head.hash, now)))
        checkpoint = AuditCheckpoint(
            seq=head.seq,
            head_hash=head.hash,
            at=now,
            key_id=key.key_id,
            signature=signature.decode(),
        )
        session.add(checkpoint)
        session.flush()
        return checkpoint


def latest(session: Session) -> AuditCheckpoint | None:
    return session.scalar(select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc()).limit(1))


def all_checkpoints(session: Session) -> list[AuditCheckpoint]:
    return list(session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.id)))


def verify_log(
    session: Session,
    key: SigningKey,
    witnessed: Sequence[tuple[str, dict]] = (),
    jobs: int = 1,
) -> VerifyResult:
    """`audit verify`: the chain, every checkpoint the database holds against it, then
    every witnessed checkpoint (`witnessed`: (where, record) pairs from the witness file
    and the auditor's trusted copies) against the chain and the database's checkpoints.
    `jobs`: processes for the hashing (review/audit/parallel_verify.py).
    """
    checkpoints = all_checkpoints(session)
    remember = {c.seq for c in checkpoints} | {r["seq"] for _where, r in witnessed}
    result = verify_chain(session, remember=remember, jobs=jobs)
    if not result.ok:
        return result
    hashes = result.hashes or {}
    for c in checkpoints:
        where = f"checkpoint {c.id} (signed {format_time(c.at)}, {c.seq} events)"
        if c.key_id != key.key_id:
            return _bad(result, c.seq, f"{where} was signed by another key ({c.key_id[:16]}…)")
        if not signature_valid(key.public_raw, c.seq, c.head_hash, c.at, c.signature):
            return _bad(result, c.seq, f"{where} has a bad signature (the checkpoint was edited)")
        if c.seq > result.count:
            return _bad(
                result,
                result.count + 1,
                f"{where}, but the chain ends at {result.count} (events removed from the end)",
            )
        if hashes.get(c.seq) != c.head_hash:
            return _bad(result, c.seq, f"{where} names another event here (the log was rewritten)")
    held = {(c.seq, c.signature) for c in checkpoints}
    problem = check_witnessed(
        list(witnessed), key.public_raw, result.count, hashes, held, "database"
    )
    if problem is not None:
        return _bad(result, *problem)
    return result


def _bad(result: VerifyResult, seq: int, problem: str) -> VerifyResult:
    return VerifyResult(False, result.count, result.head, seq, problem)
