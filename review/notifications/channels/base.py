"""What a channel is, and what it is given to send.

A channel is an object with:

- `name`: "email", "slack", "webhook" (stored on each message row);
- `personal`: True when each person gets their own message at their own address
  (e-mail); False when one message per event goes to one shared place (Slack's channel,
  the webhook), whoever the audience is;
- `kinds`: the kinds of message it carries (review/notifications/kinds.py). A channel
  that carries `deferral.decided` is told when a deferral it sent something about ends:
  that is the "deferral decided" hook (Slack rewrites its message with chat.update, the
  webhook sends the outcome event, e-mail sends nothing);
- `configured(settings) -> bool`: whether it is on (each channel is off until configured);
- `address_of(user) -> str | None` (personal channels): where this person gets it;
- `deliver(svc, message) -> str`: send one message; answer the provider's reference for
  it (Slack's "channel:ts", the e-mail's Message-ID), which is stored on the row and
  given back to later messages about the same deferral in `message.earlier`. Raise
  TryLater (retried on COUNTERSIGN_NOTIFY_RETRY_SCHEDULE, or after `retry_after`) or
  Refused (a dead letter at once: retrying cannot help). Any other exception counts as
  TryLater with its text as the error.

`deliver` runs in the worker, on a thread of its own, without a database session open:
what it needs is in the Message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from review.models import Deferral, User
    from review.services import Services
    from review.settings import Settings


class ChannelError(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class TryLater(ChannelError):
    """The provider is down, slow or limiting us: the same message may go later."""


class Refused(ChannelError):
    """The provider refused the message for good (bad address, bad credentials)."""


@dataclass(frozen=True)
class Recipient:
    user_id: int
    username: str
    address: str


@dataclass(frozen=True)
class Sent:
    """An earlier message of the same channel about the same deferral."""

    id: str
    kind: str
    tier: int
    status: str  # pending, delivered, dead, skipped
    provider_ref: str | None


@dataclass(frozen=True)
class AgentNews:
    """What an agent.killed / agent.revived message tells its owners."""

    slug: str
    name: str
    state: str
    reason: str
    by: str
    deferrals_ended: int = 0


@dataclass(frozen=True)
class Message:
    id: str  # the same on every attempt: webhook-id, Message-ID
    kind: str
    channel: str
    tier: int
    attempt: int  # 1 for the first
    created_at: datetime
    public_url: str
    recipient: Recipient | None = None  # personal channels
    # The deferrals it is about, read as they are now (detached ORM rows). Several: a batch.
    deferrals: tuple[Deferral, ...] = ()
    agent: AgentNews | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    earlier: tuple[Sent, ...] = ()

    def link(self, deferral_id: str) -> str:
        return f"{self.public_url}/deferrals/{deferral_id}"

    @property
    def queue_link(self) -> str:
        return f"{self.public_url}/queue"


class Channel(Protocol):
    name: str
    personal: bool
    kinds: frozenset[str]

    def configured(self, settings: Settings) -> bool: ...

    def address_of(self, user: User) -> str | None: ...

    def deliver(self, svc: Services, message: Message) -> str: ...
