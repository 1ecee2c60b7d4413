"""The channels there are, by name. A channel module exposes `CHANNEL` (see
review/notifications/channels/base.py); add it to CHANNEL_MODULES to plug it in."""

from __future__ import annotations

import importlib
from functools import cache

from review.notifications.channels.base import Channel
from review.settings import Settings

CHANNEL_MODULES = (
    "review.notifications.channels.email",
    "review.notifications.channels.webhook",
    "review.notifications.channels.slack",
)


@cache
def channels() -> tuple[Channel, ...]:
    return tuple(importlib.import_module(name).CHANNEL for name in CHANNEL_MODULES)


def channel(name: str) -> Channel | None:
    return next((c for c in channels() if c.name == name), None)


def configured(settings: Settings) -> tuple[Channel, ...]:
    return tuple(c for c in channels() if c.configured(settings))


def personal_names() -> tuple[str, ...]:
    """The channels a person may choose on the settings page."""
    return tuple(c.name for c in channels() if c.personal)
