"""Slack's Web API through the official client (slack_sdk's WebClient).

`COUNTERSIGN_SLACK_API_URL` is the client's `base_url` (Slack's own by default; tests
point it at a local stand-in that speaks Slack's wire format), the bot token is
`COUNTERSIGN_SLACK_BOT_TOKEN`. The client's own retries are off: a failed call raises,
and whoever asked decides whether to try again. The notifications core does, on its
schedule, for messages (SlackUnavailable carries Slack's Retry-After); a reply to a
click is not worth a retry.

What a failure means: HTTP 429 or `"error": "ratelimited"`, a 5xx, Slack's own
`internal_error`/`fatal_error`/`service_unavailable`/`request_timeout`, or no answer at
all is SlackUnavailable (try later); any other `"ok": false` is SlackRefused (the token,
the channel or the request is wrong: trying again will not help).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.webhook import WebhookClient

from review.settings import Settings

log = logging.getLogger(__name__)
TIMEOUT = 10  # seconds for a call made by the worker
QUICK_TIMEOUT = 1.5  # a call made while Slack waits for our answer (3 s in all)
TRANSIENT_ERRORS = {
    "ratelimited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
}


class SlackError(Exception):
    """A Web API call that did not succeed; the message names the method and Slack's error."""

    def __init__(self, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class SlackUnavailable(SlackError):
    """Slack is down, slow or rate limiting us: the same call may work later."""


class SlackRefused(SlackError):
    """Slack refused the call for good (bad token, unknown channel, a request it rejects)."""


@dataclass(frozen=True)
class MessageRef:
    """Where a posted message is: what chat.update needs. Stored as "channel:ts"."""

    channel: str
    ts: str

    def __str__(self) -> str:
        return f"{self.channel}:{self.ts}"

    @classmethod
    def parse(cls, text: str) -> MessageRef | None:
        """The reference of one deferral's message; None for anything else (a summary's)."""
        match = re.fullmatch(r"([A-Z0-9]+):(\d+\.\d+)", text or "")
        return cls(match.group(1), match.group(2)) if match else None


def is_configured(settings: Settings) -> bool:
    return bool(
        settings.slack_bot_token and settings.slack_signing_secret and settings.slack_channel
    )


def web_client(settings: Settings, timeout: float = TIMEOUT) -> WebClient:
    return WebClient(
        token=settings.slack_bot_token,
        base_url=settings.slack_api_url,
        timeout=timeout,  # type: ignore[arg-type]  (urllib takes a float)
        retry_handlers=[],
    )


def call(client: WebClient, method: str, **kwargs: Any) -> dict[str, Any]:
    """One Web API call (`method` as Slack names it, e.g. chat.postMessage); Slack's
    answer as a dict, or SlackUnavailable / SlackRefused."""
    function = getattr(client, method.replace(".", "_"))
    try:
        return dict(function(**kwargs).data)
    except SlackApiError as exc:
        raise _classified(method, exc) from None
    except (SlackClientError, URLError, TimeoutError, OSError, ValueError) as exc:
        raise SlackUnavailable(f"{method}: no answer from Slack ({exc})") from None


def _classified(method: str, exc: SlackApiError) -> SlackError:
    response = exc.response
    status = response.status_code
    data = response.data if isinstance(response.data, dict) else {}
    error = str(data.get("error") or f"HTTP {status}")
    retry_after = _retry_after(response.headers or {})
    if status == 429 or status >= 500 or error in TRANSIENT_ERRORS:
        return SlackUnavailable(f"{method}: {error}", retry_after)
    return SlackRefused(f"{method}: {error}")


def _retry_after(headers: dict[str, Any]) -> int | None:
    for name, value in headers.items():
        if name.lower() == "retry-after":
            raw = value[0] if isinstance(value, list) else value
            return int(raw) if str(raw).strip().isdigit() else None
    return None


UNDO = "countersign_undo"  # action_id of the Undo button in a reply


def reply_privately(response_url: str, text: str, undo_of: str = "") -> None:
    """Only the person who clicked sees `text` (escaped already): an ephemeral reply
    through the interaction's response_url, which needs no token. With `undo_of` (a
    deferral id) it has an Undo button for a decision held in its undo window."""
    blocks = None
    if undo_of:
        blocks = [
            {"type": "section", "text": {"type": "plain_text", "text": text, "emoji": False}},
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "action_id": UNDO,
                        "text": {"type": "plain_text", "text": "Undo", "emoji": False},
                        "value": undo_of,
                    }
                ],
            },
        ]
    try:
        answer = WebhookClient(response_url, timeout=TIMEOUT, retry_handlers=[]).send(
            text=text, blocks=blocks, response_type="ephemeral", replace_original=False
        )
    except (URLError, TimeoutError, OSError) as exc:
        raise SlackUnavailable(f"response_url: no answer from Slack ({exc})") from None
    if answer.status_code != 200:
        raise SlackUnavailable(f"response_url: HTTP {answer.status_code} {answer.body[:200]}")
