"""Sealing agent secrets at rest with keys derived from SECRET_KEY (Fernet: AES + HMAC).

Rotation (docs/SECRETS.md): put the old key in SECRET_KEY_FALLBACKS and the new one in
SECRET_KEY. New seals use the current key; a sealed value opens with any of them
(cryptography's MultiFernet), so agents keep verifying. `secrets reseal` then re-seals
every value with the current key, after which the fallbacks can go.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class SealError(Exception):
    """A sealed value could not be opened (wrong SECRET_KEY or damaged row)."""


def _fernet(secret_key: str) -> Fernet:
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"countersign agent secrets"
    ).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(key))


class SecretBox:
    """Seals with `secret_key`; opens with it or any of `fallbacks` (older keys)."""

    def __init__(self, secret_key: str, fallbacks: Sequence[str] = ()):
        self._current = _fernet(secret_key)
        self._fernet = MultiFernet([self._current, *(_fernet(k) for k in fallbacks)])

    def seal(self, plaintext: str) -> str:
        return self._current.encrypt(plaintext.encode()).decode()

    def open(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise SealError(
                "sealed secret cannot be opened with SECRET_KEY or SECRET_KEY_FALLBACKS"
            ) from exc

    def is_current(self, token: str) -> bool:
        """Whether the current key opens it (no reseal needed)."""
        try:
            self._current.decrypt(token.encode())
        except InvalidToken:
            return False
        return True

    def reseal(self, token: str) -> str:
        """The same plaintext sealed with the current key (SealError if no key opens it)."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken as exc:
            raise SealError(
                "sealed secret cannot be opened with SECRET_KEY or SECRET_KEY_FALLBACKS"
            ) from exc


def fingerprint(secret: str) -> str:
    """A short, non-reversible name for a secret, safe to show and log."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]
