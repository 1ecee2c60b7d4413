"""Registering an AAP instance (`POST /aap/v1/instances`), its receiver verified first.

The agent's own token is its provisioner token. A registration may name a webhook
receiver (`delivery`); before anything is created, the service POSTs a signed
`webhook.verification` message to it (Standard Webhooks, with the secret the
registration supplies) carrying a fresh challenge, and goes on only if the receiver
answers 200 with exactly `{"challenge": ...}` within 10 s: 422
`webhook_verification_failed` otherwise, and nothing is created. Then, in one
transaction: the instance, its credential (kept hashed) and its audit event.

The Idempotency-Key (per agent) makes a retry answer the original instance and the same
credential (200): the answer is kept sealed for that. A different body with the key is
409 `idempotency_conflict`. Receiver URLs are checked like callback URLs (public
addresses only, after DNS; COUNTERSIGN_ALLOW_PRIVATE_CALLBACKS=1 also lets http:// and
local receivers through, for tests and demos).
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from review.audit.chain import chained_write, record_event
from review.audit.hashing import canonical_json
from review.callbacks import outbound
from review.errors import IdempotencyConflict, InvalidRequest
from review.models import utcnow
from review.services import Services
from review.signing import sign_headers

from .errors import AapRefused
from .requests import check_key
from .tables import AapInstance
from .tokens import Credential, add_instance_credential
from .wire import stamp

VERIFY_SECONDS = 10
SECRET = re.compile(r"^whsec_[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$")
DELIVERY_FIELDS = ("type", "url", "registration_id", "signing_secret")
MAX_URL = 2000


@dataclass(frozen=True)
class Registered:
    text: str  # the ProvisionInstanceResponse, JSON
    created: bool


def provision(svc: Services, credential: Credential, key: str, body: Any) -> Registered:
    """Register an instance of the credential's agent (or answer the one this key made)."""
    if not credential.may_provision:
        raise AapRefused(
            "provisioner_token_required",
            "an instance credential cannot register instances: use the agent's token",
        )
    key = check_key(key)
    name, delivery = _read(svc, body)
    body_hash = hashlib.sha256(canonical_json(body)).hexdigest()
    earlier = _earlier(svc, credential, key, body_hash)
    if earlier is not None:
        return earlier
    instance_id = str(uuid.uuid4())
    if delivery is not None and not _receiver_answers(svc, delivery, instance_id):
        raise AapRefused(
            "webhook_verification_failed",
            "the receiver did not answer the signed verification with its challenge",
            param="delivery",
        )
    try:
        return _create(svc, credential, key, body_hash, instance_id, name, delivery)
    except IntegrityError:  # a registration with the same key won the race
        earlier = _earlier(svc, credential, key, body_hash)
        if earlier is None:
            raise
        return earlier


def _read(svc: Services, body: Any) -> tuple[str | None, dict[str, str] | None]:
    if not isinstance(body, dict):
        raise _invalid("", "the body must be a JSON object")
    for field in body:
        if field not in ("instance_name", "delivery"):
            raise _invalid(field, f"{field} is not a field of a registration")
    name = body.get("instance_name")
    if "instance_name" in body and not (isinstance(name, str) and 1 <= len(name) <= 200):
        raise _invalid("instance_name", "instance_name must be 1 to 200 characters")
    delivery = body.get("delivery")
    if delivery is None:
        if "delivery" in body:
            raise _invalid("delivery", "delivery must be an object")
        return name, None
    if not isinstance(delivery, dict):
        raise _invalid("delivery", "delivery must be an object")
    if delivery.get("type") != "webhook":
        raise AapRefused(
            "unsupported_delivery_type", "the only delivery type is webhook", param="delivery"
        )
    for field in delivery:
        if field not in DELIVERY_FIELDS:
            raise _invalid("delivery", f"delivery.{field} is not a field of a delivery")
    if not all(isinstance(delivery.get(f), str) for f in DELIVERY_FIELDS):
        raise _invalid("delivery", "delivery needs type, url, registration_id, signing_secret")
    try:
        if str(uuid.UUID(delivery["registration_id"])) != delivery["registration_id"].lower():
            raise ValueError
    except ValueError:
        raise _invalid("delivery", "delivery.registration_id must be a UUID") from None
    if not SECRET.match(delivery["signing_secret"]):
        raise _invalid("delivery", "delivery.signing_secret must be whsec_ and 32 bytes")
    _check_url(svc, delivery["url"])
    return name, delivery


def _invalid(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(message, details=[{"path": "/" + param, "message": message}])


def _check_url(svc: Services, url: str) -> None:
    allow_private = svc.settings.allow_private_callbacks
    parts = urlsplit(url)
    bad = None
    if len(url) > MAX_URL or parts.fragment or parts.username or parts.password:
        bad = "must be an absolute URL without credentials or fragment"
    elif parts.scheme != "https" and not (allow_private and parts.scheme == "http"):
        bad = "must be https://"
    else:
        try:
            outbound.resolve(url, allow_private=allow_private)
        except outbound.OutboundRefused as exc:
            bad = str(exc)
    if bad is not None:
        raise AapRefused("invalid_webhook_url", f"delivery.url {bad}", param="delivery")


def _receiver_answers(svc: Services, delivery: dict[str, str], instance_id: str) -> bool:
    """One signed verification attempt: 200 with exactly the challenge, within 10 s."""
    message_id, challenge = str(uuid.uuid4()), str(uuid.uuid4())
    message = {
        "id": message_id,
        "type": "webhook.verification",
        "registration_id": delivery["registration_id"],
        "instance_id": instance_id,
        "created_at": stamp(utcnow()),
        "challenge": challenge,
    }
    raw = json.dumps(message, separators=(",", ":")).encode()
    headers = sign_headers(delivery["signing_secret"], message_id, raw)
    headers["Content-Type"] = "application/json"
    answer = outbound.post(
        delivery["url"],
        raw,
        headers,
        allow_private=svc.settings.allow_private_callbacks,
        deadline=VERIFY_SECONDS,
    )
    if answer.code != 200:
        return False
    try:
        return json.loads(answer.body) == {"challenge": challenge}
    except ValueError:
        return False


def _earlier(svc: Services, credential: Credential, key: str, body_hash: str) -> Registered | None:
    with svc.db.read() as session:
        found = session.scalar(
            select(AapInstance).where(
                AapInstance.agent_id == credential.agent_id, AapInstance.provision_key == key
            )
        )
        if found is None:
            return None
        if found.provision_hash != body_hash:
            raise IdempotencyConflict(
                "this Idempotency-Key was already used for a different registration"
            )
        return Registered(svc.box.open(found.provisioned), created=False)


def _create(
    svc: Services,
    credential: Credential,
    key: str,
    body_hash: str,
    instance_id: str,
    name: str | None,
    delivery: dict[str, str] | None,
) -> Registered:
    now = utcnow()
    name = name or f"{credential.slug}-{instance_id[:8]}"
    instance: dict[str, Any] = {"id": instance_id, "name": name}
    if delivery is not None:
        instance["delivery"] = {k: delivery[k] for k in ("type", "url", "registration_id")}
    with chained_write(svc.db) as session:
        row = AapInstance(
            id=instance_id,
            agent_id=credential.agent_id,
            name=name,
            delivery_url=delivery["url"] if delivery else None,
            registration_id=delivery["registration_id"] if delivery else None,
            signing_secret=svc.box.seal(delivery["signing_secret"]) if delivery else None,
            provision_key=key,
            provision_hash=body_hash,
            provisioned="",
            created_at=now,
        )
        session.add(row)
        session.flush()  # the key's unique constraint decides a race here
        token = add_instance_credential(session, credential.agent_id, instance_id, now)
        text = json.dumps({"instance": instance, "credential": {"token": token}})
        row.provisioned = svc.box.seal(text)
        record_event(
            session,
            actor_kind="agent",
            actor_id=credential.slug,
            event_type="aap.instance_registered",
            agent=credential.slug,
            payload={"instance": instance},
            at=now,
        )
    return Registered(text, created=True)
