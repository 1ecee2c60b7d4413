"""Receiving the service's callbacks (PROTOCOL.md section 6): verify, parse, deduplicate.

`verify_callback` raises one exception, InvalidCallback, for everything a receiver can be
sent (a forged or stale signature, missing or malformed headers, bytes that are not
UTF-8 JSON, JSON that is not a Countersign event), so a receiver answers 400 to it and
nothing else can escape. A callback is a wake-up: before running anything, read the
deferral again with a signed GET (`Countersign.get`) and check it (`ensure_runnable`).
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, Protocol

from countersign_client.signing import BadSignature, checked_message_id

EVENT_TYPES = ("deferral.decided", "agent.killed", "agent.revived")
DAY = 86400.0
# The default retry schedule spans about 3.2 days (5 s ... 24 h); keep ids for longer.
DEFAULT_TTL = 4 * DAY


class InvalidCallback(Exception):
    """Not a callback from the service: answer 400 and do nothing else."""


def verify_callback(
    secret: str | Iterable[str],
    headers: Any,
    body: bytes | bytearray | memoryview | str,
    *,
    now: float | None = None,
) -> dict[str, Any]:
    """The event of a callback signed with `secret` (or one of several, while rotating).

    Returns `{"type", "timestamp", "data", "webhook_id"}`: `type` is "deferral.decided"
    (`data` is the deferral resource), "agent.killed" or "agent.revived" (`data` is the
    agent's status object); `webhook_id` is the event's id, the same on every retry of
    it (deduplicate on it). Raises InvalidCallback, and only that, for anything else.
    """
    secrets = [secret] if isinstance(secret, str) else _secrets(secret)
    raw = _raw_body(body)
    wanted = _lowercase(headers)
    try:
        webhook_id = checked_message_id(secrets, wanted, raw, now)
    except BadSignature as exc:
        raise InvalidCallback(f"not signed by this agent's secret: {exc}") from None
    try:
        event = json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidCallback("the body is not UTF-8 JSON") from None
    return _checked_event(event, webhook_id)


def _secrets(given: Any) -> list[str]:
    try:
        secrets = list(given)
    except TypeError:
        raise InvalidCallback("the secret is a whsec_ string (or several)") from None
    if not secrets or not all(isinstance(s, str) for s in secrets):
        raise InvalidCallback("the secret is a whsec_ string (or several)")
    return secrets


def _raw_body(body: Any) -> bytes:
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    if isinstance(body, str):
        try:
            return body.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidCallback("the body is not Unicode text") from None
    raise InvalidCallback("the body is the request's raw bytes")


def _lowercase(headers: Any) -> dict[str, str]:
    """The webhook-* headers, whatever the container and the case of the names."""
    try:
        pairs = list(headers.items() if hasattr(headers, "items") else headers)
    except Exception:  # whatever a caller's container raises, it is not a callback
        raise InvalidCallback("headers are a mapping of names to values") from None
    found: dict[str, str] = {}
    for pair in pairs:
        try:
            name, value = pair
        except (TypeError, ValueError):
            raise InvalidCallback("headers are a mapping of names to values") from None
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if not isinstance(name, str) or not isinstance(value, str):
            raise InvalidCallback("header names and values are text")
        if name.lower().startswith("webhook-"):
            found[name.lower()] = value
    return found


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _checked_event(event: Any, webhook_id: str) -> dict[str, Any]:
    if not isinstance(event, dict):
        raise InvalidCallback("the event is not a JSON object")
    kind, data = event.get("type"), event.get("data")
    if kind not in EVENT_TYPES:
        raise InvalidCallback(f"unknown event type {str(kind)[:80]!r}")
    if not isinstance(data, dict):
        raise InvalidCallback("the event has no data object")
    if kind == "deferral.decided":
        if not (isinstance(data.get("id"), str) and isinstance(data.get("status"), str)):
            raise InvalidCallback("deferral.decided carries a deferral with an id and status")
    elif not (isinstance(data.get("agent"), str) and isinstance(data.get("state"), str)):
        raise InvalidCallback(f"{kind} carries the agent's status with agent and state")
    timestamp = event.get("timestamp")
    return {
        "type": kind,
        "timestamp": timestamp if isinstance(timestamp, str) else None,
        "data": data,
        "webhook_id": webhook_id,
    }


class WebhookIdStore(Protocol):
    """Where handled webhook-ids are kept; plug in a shared one (Redis, a table) for
    several receiver processes. `add` must be atomic: True only for the first caller."""

    def add(self, webhook_id: str) -> bool:
        """Record `webhook_id`; True when it was not recorded (and unexpired) before."""
        ...

    def discard(self, webhook_id: str) -> None:
        """Forget `webhook_id` (handling it failed, so its retry should be handled)."""
        ...


class SeenIds:
    """Handled webhook-ids in this process's memory: each kept for `ttl` seconds, and at
    most `max_ids` of them (the oldest go first). Thread-safe.

    Use one store shared by every receiver process when there are several (see
    WebhookIdStore); this one forgets everything when the process restarts, so a
    receiver must still check a deferral before acting (Countersign.get, ensure_runnable).
    """

    def __init__(self, ttl: float = DEFAULT_TTL, max_ids: int = 100_000, clock: Any = None):
        if ttl <= 0 or max_ids <= 0:
            raise ValueError("ttl and max_ids are positive")
        self.ttl = ttl
        self.max_ids = max_ids
        self._clock = clock or time.monotonic
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, float] = OrderedDict()  # id -> expiry, oldest first

    def add(self, webhook_id: str) -> bool:
        now = self._clock()
        with self._lock:
            self._drop_expired(now)
            if webhook_id in self._seen:
                return False
            self._seen[webhook_id] = now + self.ttl
            while len(self._seen) > self.max_ids:
                self._seen.popitem(last=False)
            return True

    def discard(self, webhook_id: str) -> None:
        with self._lock:
            self._seen.pop(webhook_id, None)

    def __contains__(self, webhook_id: object) -> bool:
        with self._lock:
            self._drop_expired(self._clock())
            return webhook_id in self._seen

    def __len__(self) -> int:
        with self._lock:
            self._drop_expired(self._clock())
            return len(self._seen)

    def _drop_expired(self, now: float) -> None:
        while self._seen:
            oldest, expiry = next(iter(self._seen.items()))
            if expiry > now:
                return
            del self._seen[oldest]
