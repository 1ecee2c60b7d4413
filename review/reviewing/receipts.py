"""Approval receipts (PROTOCOL.md section 13): an approval, signed, checkable offline.

Every approval carries `decision.receipt`, a compact JWS (RFC 7515; `alg` EdDSA, an
Ed25519 signature, RFC 8037) whose claims say which action (its digest) of which agent
was approved by whom, under which policy, until when (`exp` = `valid_until`). A target
system checks it with the public keys at `GET /.well-known/jwks.json` and nothing else:
no call to the service, no shared secret.

The signing key is the service's own, not the audit log's: generated once into
instance/receipt_ed25519.pem (mode 0600) unless COUNTERSIGN_RECEIPT_KEY_FILE names one.
`kid` is its RFC 7638 thumbprint. `receipts rotate-key` makes a new key current; the
old public key is kept in `<key>.retired.json` beside it and stays in the JWKS until
every receipt it signed has expired (the approval TTL, plus RETIRED_MARGIN). A process
reads the key once per version of the file (one stat per approval), so the web workers
sign with the new key from their next approval on, without a restart.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import functools
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from review.ids import ulid
from review.models import Deferral
from review.settings import Settings

# A retired key stays listed this long after the last receipt it may have signed expires:
# room for verifiers' leeway, clocks that disagree, and a signer that had just read it.
RETIRED_MARGIN = 3600


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _compact_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def public_jwk(public_raw: bytes) -> dict[str, str]:
    """The JWK of an Ed25519 public key (RFC 8037), its `kid` the RFC 7638 thumbprint."""
    x = b64url(public_raw)
    required = _compact_json({"crv": "Ed25519", "kty": "OKP", "x": x})  # sorted, as 7638 says
    kid = b64url(hashlib.sha256(required).digest())
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"}


@dataclass(frozen=True)
class ReceiptKey:
    private: Ed25519PrivateKey
    jwk: dict[str, str]

    @property
    def kid(self) -> str:
        return self.jwk["kid"]


# --- the key files -------------------------------------------------------------------


def current_key(path: str | Path) -> ReceiptKey:
    """The signing key at `path`, created (mode 0600) if there is none yet."""
    path = Path(path)
    try:
        stat = path.stat()
    except FileNotFoundError:
        _create_key(path)
        stat = path.stat()
    return _read_key(str(path), stat.st_ino, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _read_key(path: str, _inode: int, _mtime_ns: int, _size: int) -> ReceiptKey:
    """Read once per process and version of the file (a rotation replaces the file)."""
    loaded = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an ed25519 private key")
    raw = loaded.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return ReceiptKey(loaded, public_jwk(raw))


def _new_pem() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _written(folder: Path, content: bytes, mode: int) -> Path:
    """A new file in `folder` holding `content` (flushed to disk), for a link or rename."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=folder, prefix=".receipt-")
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fh.fileno(), mode)
        fh.write(content)
        fh.flush()
        os.fsync(fh.fileno())
    return Path(name)


def _create_key(path: Path) -> None:
    """Write a whole key, then link it into place: a racing process either wins or reads
    the winner's complete file, never a half-written one."""
    temp = _written(path.parent, _new_pem(), 0o600)
    try:
        os.link(temp, path)
    except FileExistsError:
        pass  # another process made it first: use theirs
    finally:
        temp.unlink()


def retired_path(key_path: str | Path) -> Path:
    return Path(key_path).with_suffix(".retired.json")


def retired_keys(key_path: str | Path) -> list[dict[str, Any]]:
    """The retired public keys: JWKs with `retired_at` and `listed_until` (Unix seconds)."""
    path = retired_path(key_path)
    try:
        stat = path.stat()
    except FileNotFoundError:
        return []
    return list(_read_retired(str(path), stat.st_ino, stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=8)
def _read_retired(path: str, _inode: int, _mtime_ns: int, _size: int) -> tuple[dict, ...]:
    keys = json.loads(Path(path).read_text())["keys"]
    return tuple(keys)


@contextlib.contextmanager
def _rotation_lock(key_path: Path) -> Iterator[None]:
    """One rotation at a time, so two never drop each other's retired key."""
    key_path.parent.mkdir(parents=True, exist_ok=True)
    with open(key_path.with_suffix(".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _still_listed(entry: dict[str, Any], settings: Settings, now: float) -> bool:
    # The later of what was promised at rotation and what today's TTL asks for.
    until = max(entry["listed_until"], entry["retired_at"] + settings.approval_ttl + RETIRED_MARGIN)
    return now < until


@dataclass(frozen=True)
class Rotation:
    old: ReceiptKey
    new: ReceiptKey
    old_listed_until: int  # Unix seconds: until then the JWKS lists the old key


def rotate_key(settings: Settings, now: float | None = None) -> Rotation:
    """Make a new signing key current; the old public key stays listed while receipts it
    signed may be valid. The retired list is written before the key is replaced, so at
    no moment does the JWKS lack the key that signs."""
    now = time.time() if now is None else now
    path = Path(settings.receipt_key_file)
    with _rotation_lock(path):
        old = current_key(path)
        kept = [e for e in retired_keys(path) if _still_listed(e, settings, now)]
        until = int(now) + settings.approval_ttl + RETIRED_MARGIN
        kept.append({**old.jwk, "retired_at": int(now), "listed_until": until})
        listing = _written(path.parent, json.dumps({"keys": kept}, indent=1).encode(), 0o644)
        os.replace(listing, retired_path(path))
        os.replace(_written(path.parent, _new_pem(), 0o600), path)
    return Rotation(old, current_key(path), until)


def jwks(settings: Settings, now: float | None = None) -> dict[str, list[dict[str, str]]]:
    """The JWK Set a verifier needs: the current key, then the retired ones still listed."""
    now = time.time() if now is None else now
    current = current_key(settings.receipt_key_file)
    keys = [current.jwk]
    for entry in retired_keys(settings.receipt_key_file):
        if entry["kid"] != current.kid and _still_listed(entry, settings, now):
            keys.append({k: entry[k] for k in current.jwk})
    return {"keys": keys}


# --- receipts ------------------------------------------------------------------------


@dataclass(frozen=True)
class Receipt:
    token: str  # the compact JWS: header.payload.signature
    kid: str
    claims: dict[str, Any]


def issue_receipt(
    settings: Settings,
    deferral: Deferral,
    approvers: list[str],
    now: datetime,
    valid_until: datetime,
) -> Receipt:
    """The signed receipt of an approval being made now, valid until `valid_until`."""
    claims = {
        "iss": settings.public_url,
        "sub": deferral.id,
        "jti": f"rct_{ulid()}",
        "iat": int(now.timestamp()),
        "exp": int(valid_until.timestamp()),  # whole seconds, like valid_until on the wire
        "agent": deferral.agent.slug,
        "action_digest": deferral.action_digest,
        "policy_version": deferral.policy_version,
        "approvers": list(approvers),
        # A reviewer approved edited arguments (review/reviewing/edits.py).
        "edited": getattr(deferral, "original_action_digest", None) is not None,
    }
    key = current_key(settings.receipt_key_file)
    header = {"alg": "EdDSA", "kid": key.kid, "typ": "JWT"}
    signing_input = f"{b64url(_compact_json(header))}.{b64url(_compact_json(claims))}"
    signature = key.private.sign(signing_input.encode("ascii"))
    return Receipt(f"{signing_input}.{b64url(signature)}", key.kid, claims)
