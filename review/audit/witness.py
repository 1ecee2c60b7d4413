"""Checkpoints kept outside the database: the witness file and the witness URL.

Every signed checkpoint, once its transaction has committed, is appended as one JSON
line to the witness file (COUNTERSIGN_AUDIT_WITNESS_FILE, default
instance/audit-witness.jsonl: opened O_APPEND, written in one write, fsync'd, mode
0600) and, when COUNTERSIGN_AUDIT_WITNESS_URL is set, POSTed there as a Standard
Webhooks request signed with COUNTERSIGN_AUDIT_WITNESS_SECRET. A line is the export's
checkpoint record plus the public key:

    {"record":"checkpoint","seq":..,"at":..,"hash":..,"key_id":..,"signature":..,
     "heads":[[shard,shard_seq,hash],..],"public_key":..}

(`hash` is the Merkle root over `heads`; a checkpoint from before shards has no `heads`
and `hash` is the single chain's head)

so the file, a copy of it, what the URL received and an earlier export all read the
same way (verifier.read_checkpoints). `audit verify` compares the chain against them.

Appending after the commit, not before, means the file never names a checkpoint the
database did not keep; a crash in between only leaves one checkpoint unwitnessed (the
next one covers the same events and more). A witness that fails is logged and never
blocks the chain: the URL gets the checkpoints it missed with the next checkpoint
(the newest MAX_PER_DELIVERY of them; the newest alone vouches for every event before
it). What it has acknowledged is kept in instance/audit-witness-url.json.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import func, select

from review.callbacks.outbound import OutboundRefused, resolve
from review.models import AuditCheckpoint
from review.services import Services
from review.signing import sign_headers

if TYPE_CHECKING:
    from review.audit.checkpoints import SigningKey

log = logging.getLogger(__name__)
TIMEOUT_SECONDS = 10.0
MAX_PER_DELIVERY = 20
EVENT_TYPE = "audit.checkpoint"


def checkpoint_record(c: AuditCheckpoint, key: SigningKey) -> dict[str, Any]:
    """One witness line: the checkpoint as the export writes it (with the shard heads it
    commits to), and the public key."""
    from review.audit.checkpoints import as_record  # noqa: PLC0415  (checkpoints imports this)

    return {**as_record(c), "public_key": key.public_b64}


def append_line(path: str | Path, record: dict[str, Any]) -> None:
    """Append `record` as one line: one write on an O_APPEND descriptor, then fsync."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        written = os.write(fd, line)
        if written != len(line):
            raise OSError(f"short write to {path}: {written} of {len(line)} bytes")
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(svc: Services, checkpoint: AuditCheckpoint, key: SigningKey) -> list[str]:
    """Witness a committed checkpoint: the file, then the URL. What happened, for people."""
    notes = []
    path = svc.settings.audit_witness_file
    try:
        append_line(path, checkpoint_record(checkpoint, key))
    except OSError as exc:
        log.error("audit witness file %s: %s", path, exc)
        notes.append(f"witness file {path}: NOT written ({exc})")
    else:
        notes.append(f"witness file {path}: appended")
    if svc.settings.audit_witness_url:
        notes.append(deliver(svc, key))
    return notes


def _state_path(svc: Services) -> Path:
    return svc.settings.instance_path / "audit-witness-url.json"


def _acknowledged(svc: Services) -> int | None:
    """The newest seq the witness URL acknowledged (None: nothing, or another URL did)."""
    try:
        state = json.loads(_state_path(svc).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or state.get("url") != svc.settings.audit_witness_url:
        return None
    seq = state.get("seq")
    return seq if isinstance(seq, int) else None


def _acknowledge(svc: Services, seq: int) -> None:
    """Remember `seq` as delivered: written aside and renamed, so a crash leaves the old
    state or the new, never half (mode 0600: the URL may carry a token)."""
    path = _state_path(svc)
    temporary = path.with_name(f"{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"url": svc.settings.audit_witness_url, "seq": seq}, fh)
    os.replace(temporary, path)


def deliver(svc: Services, key: SigningKey) -> str:
    """POST the checkpoints the witness URL has not acknowledged, oldest first; stop at
    the first failure (logged: the next checkpoint tries again)."""
    acknowledged = _acknowledged(svc)
    with svc.db.read() as session:
        if acknowledged is None:  # a new witness starts from the newest checkpoint
            newest = session.scalar(select(func.max(AuditCheckpoint.seq)))
            acknowledged = (newest or 1) - 1
            _acknowledge(svc, acknowledged)
        pending = session.scalars(
            select(AuditCheckpoint)
            .where(AuditCheckpoint.seq > acknowledged)
            .order_by(AuditCheckpoint.seq.desc())
            .limit(MAX_PER_DELIVERY)
        ).all()
    pending = list(reversed(pending))
    for done, checkpoint in enumerate(pending):
        error = post(svc, checkpoint_record(checkpoint, key))
        if error is not None:
            log.warning("audit witness URL: checkpoint %d not delivered: %s", checkpoint.seq, error)
            return (
                f"witness URL: {done} delivered, checkpoint {checkpoint.seq} NOT delivered "
                f"({error}); retried with the next checkpoint"
            )
        _acknowledge(svc, checkpoint.seq)
    return f"witness URL: {len(pending)} delivered"


def post(svc: Services, record: dict[str, Any]) -> str | None:
    """One signed POST of a checkpoint to the witness URL: None, or what went wrong.

    The URL goes through the callbacks' outbound checks (public addresses only, the
    checked address pinned, no redirects, no proxy from the environment).
    """
    try:
        target = resolve(
            svc.settings.audit_witness_url, allow_private=svc.settings.allow_private_callbacks
        )
    except OutboundRefused as exc:
        return f"refused: {exc}"
    body = json.dumps(
        {"type": EVENT_TYPE, "timestamp": record["at"], "data": record},
        separators=(",", ":"),
        ensure_ascii=False,
    )
    msg_id = f"ckpt_{record['key_id'][:16]}_{record['seq']}"  # the same on every retry
    headers = sign_headers(svc.settings.audit_witness_secret, msg_id, body)
    headers.update({"Content-Type": "application/json", "Host": target.host_header})
    extensions = {"sni_hostname": target.host} if target.url.startswith("https") else {}
    try:
        with (
            httpx.Client(
                timeout=TIMEOUT_SECONDS,
                follow_redirects=False,
                trust_env=False,
                headers={"User-Agent": "Countersign-Witness/1"},
            ) as client,
            client.stream(
                "POST", target.url, content=body.encode(), headers=headers, extensions=extensions
            ) as response,
        ):
            status = response.status_code  # the body is not read
    except httpx.TimeoutException:
        return f"timed out after {TIMEOUT_SECONDS:.0f} s"
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {str(exc)[:300]}"
    return None if 200 <= status < 300 else f"answered {status}"
