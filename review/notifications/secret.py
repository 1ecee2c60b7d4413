"""The notification webhook's signing secret: made once, sealed at rest like agents'
secrets (review/sealing.py, opened with SECRET_KEY or its fallbacks), shown by
`flask --app app notify secret`."""

from __future__ import annotations

import base64
import secrets

from sqlalchemy.exc import IntegrityError

from review.models import utcnow
from review.notifications.models import ServiceSecret
from review.sealing import fingerprint
from review.services import Services

WEBHOOK_SECRET = "notify_webhook"  # noqa: S105  (the row's name, not a secret)


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def webhook_secret(svc: Services) -> str | None:
    """The secret, or None before `notify secret` (or the first webhook) made one."""
    with svc.db.read() as session:
        row = session.get(ServiceSecret, WEBHOOK_SECRET)
        return svc.box.open(row.ciphertext) if row is not None else None


def ensure_webhook_secret(svc: Services, *, rotate: bool = False) -> str:
    """The secret, made now if there is none (or a new one, with rotate). Two processes
    making the first one at once agree on one: the loser reads the winner's."""
    for _ in range(2):
        try:
            with svc.db.write() as session:
                row = session.get(ServiceSecret, WEBHOOK_SECRET, with_for_update=True)
                if row is not None and not rotate:
                    return svc.box.open(row.ciphertext)
                secret = new_secret()
                if row is None:
                    row = ServiceSecret(name=WEBHOOK_SECRET)
                    session.add(row)
                row.ciphertext = svc.box.seal(secret)
                row.fingerprint = fingerprint(secret)
                row.created_at = utcnow()
                return secret
        except IntegrityError:  # another process inserted it first
            rotate = False
    raise RuntimeError("the webhook secret could be neither made nor read")
