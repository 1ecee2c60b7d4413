"""Approval receipts (PROTOCOL.md section 13): check an approval offline.

Every approval carries `decision.receipt`, a compact JWS signed by the service (EdDSA,
Ed25519). A target system that is handed one checks it with the service's public keys
alone, fetched once in a while from `GET <service>/.well-known/jwks.json`:

    claims = verify_receipt(receipt, jwks, issuer="https://countersign.example.com",
                            action_digest=action_digest(action))

`verify_receipt` raises one exception, InvalidReceipt, for everything (a forged or
altered receipt, a key the JWK Set does not hold, an expired receipt, another issuer or
action, bytes that are not a receipt at all), so a caller refuses to run on it and
nothing else can escape. A receipt with an unknown `kid` may have been signed with a
key newer than your copy of the JWK Set: fetch it again once, then refuse.

Verifying needs the `cryptography` package: `pip install countersign-client[receipts]`.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import time
from typing import Any

MAX_RECEIPT = 16 * 1024  # characters; a receipt is well under 1 KiB
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_TEXT_CLAIMS = ("iss", "sub", "jti", "agent", "action_digest", "policy_version")


class InvalidReceipt(Exception):
    """Not a valid receipt of an approval for this: do not run the action."""


def verify_receipt(
    receipt: str,
    jwks: dict[str, Any],
    *,
    now: float | None = None,
    leeway: float = 60,
    issuer: str | None = None,
    action_digest: str | None = None,
) -> dict[str, Any]:
    """The claims of `receipt` once its signature, times and (if given) issuer and action
    digest check out against the JWK Set `jwks` (`{"keys": [...]}`, as the service
    publishes it).

    Claims: `iss` (the service's URL), `sub` (the deferral id), `jti`, `iat`, `exp` (Unix
    seconds; `exp` is the approval's `valid_until`), `agent`, `action_digest`,
    `policy_version`, `approvers` (usernames) and `edited` (bool). `now` is Unix seconds
    (default: the clock); `leeway` the seconds of clock difference forgiven on `iat` and
    `exp`. Raises InvalidReceipt, and only that, for anything else.
    """
    header_b64, payload_b64, signature_b64 = _parts(receipt)
    header = _json_object(header_b64, "header")
    if header.get("alg") != "EdDSA":
        raise InvalidReceipt(f"alg must be EdDSA, not {header.get('alg')!r}")
    if "crit" in header:
        raise InvalidReceipt("the header has critical extensions this client does not know")
    if header.get("typ", "JWT") != "JWT":
        raise InvalidReceipt(f"typ must be JWT, not {header.get('typ')!r}")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidReceipt("the header names no key (kid)")
    public_key = _public_key(jwks, kid)
    signed = f"{header_b64}.{payload_b64}".encode("ascii")
    if not _signature_valid(public_key, _b64decode(signature_b64, "signature"), signed):
        raise InvalidReceipt(f"the signature does not verify with key {kid}")
    claims = _checked_claims(_json_object(payload_b64, "payload"))
    _check_times(claims, time.time() if now is None else now, leeway)
    if issuer is not None and claims["iss"].rstrip("/") != str(issuer).rstrip("/"):
        raise InvalidReceipt(f"issued by {claims['iss']!r}, not {issuer!r}")
    if action_digest is not None and claims["action_digest"] != action_digest:
        raise InvalidReceipt("the receipt approves another action (its action_digest differs)")
    return claims


def _parts(receipt: Any) -> tuple[str, str, str]:
    if not isinstance(receipt, str):
        raise InvalidReceipt("a receipt is a string (header.payload.signature)")
    if len(receipt) > MAX_RECEIPT:
        raise InvalidReceipt("too long to be a receipt")
    parts = receipt.strip().split(".")
    if len(parts) != 3 or not all(parts):
        raise InvalidReceipt("a receipt has three dot-separated parts (a compact JWS)")
    if not all(_B64URL.fullmatch(part) for part in parts):
        raise InvalidReceipt("a receipt's parts are base64url")
    return parts[0], parts[1], parts[2]


def _b64decode(part: str, what: str) -> bytes:
    if not _B64URL.fullmatch(part) or len(part) % 4 == 1:
        raise InvalidReceipt(f"the {what} is not base64url")
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise InvalidReceipt(f"the {what} is not base64url") from None


def _json_object(part: str, what: str) -> dict[str, Any]:
    raw = _b64decode(part, what)
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidReceipt(f"the {what} is not UTF-8 JSON") from None
    if not isinstance(value, dict):
        raise InvalidReceipt(f"the {what} is not a JSON object")
    return value


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _public_key(jwks: Any, kid: str) -> bytes:
    """The raw Ed25519 public key the JWK Set lists under `kid`."""
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list):
        raise InvalidReceipt('the JWK Set must be a dict {"keys": [...]}')
    for jwk in keys:
        if not isinstance(jwk, dict) or jwk.get("kid") != kid:
            continue
        if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            raise InvalidReceipt(f"key {kid} is not an Ed25519 key")
        if jwk.get("alg", "EdDSA") != "EdDSA" or jwk.get("use", "sig") != "sig":
            raise InvalidReceipt(f"key {kid} is not for EdDSA signatures")
        x = jwk.get("x")
        raw = _b64decode(x, f"key {kid}") if isinstance(x, str) else b""
        if len(raw) != 32:
            raise InvalidReceipt(f"key {kid} is not a 32-byte Ed25519 public key")
        return raw
    raise InvalidReceipt(
        f"no key {kid} in the JWK Set (if it was fetched a while ago, fetch it again)"
    )


def _signature_valid(public_raw: bytes, signature: bytes, signed: bytes) -> bool:
    try:  # imported here: only verifying receipts needs it (the `receipts` extra)
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:
        raise InvalidReceipt(
            "verifying receipts needs the cryptography package: "
            "pip install 'countersign-client[receipts]'"
        ) from None
    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(signature, signed)
    except (InvalidSignature, ValueError):
        return False
    return True


def _checked_claims(claims: dict[str, Any]) -> dict[str, Any]:
    for name in _TEXT_CLAIMS:
        if not isinstance(claims.get(name), str):
            raise InvalidReceipt(f"the claim {name} is missing or not a string")
    for name in ("iat", "exp"):
        value = claims.get(name)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise InvalidReceipt(f"the claim {name} is missing or not a number")
    approvers = claims.get("approvers")
    if not isinstance(approvers, list) or not all(isinstance(a, str) for a in approvers):
        raise InvalidReceipt("the claim approvers is missing or not a list of names")
    if not isinstance(claims.get("edited"), bool):
        raise InvalidReceipt("the claim edited is missing or not true/false")
    return claims


def _check_times(claims: dict[str, Any], now: Any, leeway: Any) -> None:
    try:
        now, leeway = float(now), float(leeway)
    except (TypeError, ValueError):
        now = leeway = math.nan
    if not (math.isfinite(now) and math.isfinite(leeway)):
        raise InvalidReceipt("now and leeway are numbers of seconds")
    if now > claims["exp"] + leeway:
        raise InvalidReceipt("the receipt has expired: the approval is no longer valid")
    if claims["iat"] > now + leeway:
        raise InvalidReceipt("the receipt is issued in the future: is a clock wrong?")
