"""Sealing agent secrets at rest with a key derived from SECRET_KEY (Fernet: AES + HMAC).

Changing SECRET_KEY makes sealed secrets unreadable: rotate agent secrets after it.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class SealError(Exception):
    """A sealed value could not be opened (wrong SECRET_KEY or damaged row)."""


class SecretBox:
    def __init__(self, secret_key: str):
        key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"countersign agent secrets"
        ).derive(secret_key.encode())
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def seal(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def open(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise SealError("sealed secret cannot be opened with this SECRET_KEY") from exc


def fingerprint(secret: str) -> str:
    """A short, non-reversible name for a secret, safe to show and log."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]
