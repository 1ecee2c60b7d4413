"""The Slack channel (PROTOCOL.md section 14): one shared channel, COUNTERSIGN_SLACK_CHANNEL.

A deferral waiting for people (and its escalation and its reminder before expiry) is
posted as the message of review/notifications/channels/slack_message.py, with Approve
and Reject buttons; the delivery's provider reference is the message's "channel:ts".
When the deferral ends (`deferral.decided`, the core's hook), every message posted
about it is rewritten in place with chat.update to show the outcome, buttons gone.
A batch of many deferrals at once is one summary message with a link to the queue and
no buttons (its reference ends in ":summary", and nothing rewrites it).

Slack's answers map onto the core's: SlackUnavailable (5xx, 429 or `ratelimited`, no
answer) is TryLater with Slack's Retry-After; SlackRefused (`invalid_auth`,
`channel_not_found`, ...) is Refused.
"""

from __future__ import annotations

from review.notifications import kinds
from review.notifications.channels.base import Message, Refused, TryLater
from review.notifications.channels.slack_api import (
    MessageRef,
    SlackRefused,
    SlackUnavailable,
    call,
    is_configured,
    web_client,
)
from review.notifications.channels.slack_jobs import post_message, update_message
from review.notifications.channels.slack_text import escape, ours, plain
from review.services import Services
from review.settings import Settings

SUMMARY = ":summary"


class SlackChannel:
    name = "slack"
    personal = False
    kinds = frozenset({kinds.WAITING, kinds.ESCALATED, kinds.EXPIRING, kinds.DECIDED})

    def configured(self, settings: Settings) -> bool:
        return is_configured(settings)

    def address_of(self, user) -> str | None:
        return None  # one shared channel, not a person's address

    def deliver(self, svc: Services, message: Message) -> str:
        try:
            if message.kind == kinds.DECIDED:
                return self._rewrite_earlier(svc, message)
            if len(message.deferrals) == 1:
                return str(post_message(svc, message.deferrals[0], _heading(message)))
            return self._post_summary(svc, message)
        except SlackUnavailable as exc:
            raise TryLater(exc.message, retry_after=exc.retry_after) from None
        except SlackRefused as exc:
            raise Refused(exc.message) from None

    def _rewrite_earlier(self, svc: Services, message: Message) -> str:
        """The hook: each message posted about the deferral shows how it ended."""
        [deferral] = message.deferrals
        refs = [
            ref
            for ref in (MessageRef.parse(s.provider_ref or "") for s in message.earlier)
            if ref is not None
        ]
        for ref in refs:
            update_message(svc, deferral, ref)
        return " ".join(str(r) for r in refs) or "nothing to update"

    def _post_summary(self, svc: Services, message: Message) -> str:
        levels = sorted({d.risk_level for d in message.deferrals})
        count = len(message.deferrals)
        text = f"{count} deferrals at {', '.join(levels)} risk wait for a decision."
        lines = [f"{d.summary} ({d.agent.slug}, {d.risk_level})" for d in message.deferrals[:10]]
        more = count - len(lines)
        blocks = [
            {"type": "section", "text": ours(f"*{escape(text)}*")},
            {
                "type": "section",
                "text": plain("\n".join(lines) + (f"\n… {more} more" if more > 0 else "")),
            },
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "action_id": "countersign_open",
                        "text": plain("Open the queue", 75),
                        "url": message.queue_link,
                    }
                ],
            },
        ]
        answer = call(
            web_client(svc.settings),
            "chat.postMessage",
            channel=svc.settings.slack_channel,
            text=text,
            blocks=blocks,
            mrkdwn=False,
            unfurl_links=False,
            unfurl_media=False,
        )
        return f"{answer.get('channel')}:{answer.get('ts')}{SUMMARY}"


def _heading(message: Message) -> str | None:
    if message.kind == kinds.ESCALATED:
        return "Still unclaimed"
    if message.kind == kinds.EXPIRING:
        return "Expiring soon"
    return None


CHANNEL = SlackChannel()
