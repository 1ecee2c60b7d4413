"""Worker jobs for Slack's follow-ups (enqueued by dotted name, with ids and strings).

`refresh_messages` rewrites each Slack message of a deferral (chat.update) from the
deferral as it is now, so running it twice, late, or out of order still leaves the
messages true. `reply` shows a refusal to the one person who clicked. Neither is
retried: the notifications core retries messages it owns; a reply that did not arrive
is a lost notice, and the decision it was about is in the database either way.
"""

from __future__ import annotations

import logging

from review.models import Deferral
from review.notifications.channels import slack_message
from review.notifications.channels.slack_api import (
    MessageRef,
    SlackError,
    SlackRefused,
    call,
    is_configured,
    reply_privately,
    web_client,
)
from review.services import Services, current_services

log = logging.getLogger(__name__)


def update_message(svc: Services, deferral: Deferral, ref: MessageRef) -> None:
    """chat.update one message to show the deferral as it is now (SlackError if not)."""
    call(
        web_client(svc.settings),
        "chat.update",
        channel=ref.channel,
        ts=ref.ts,
        text=slack_message.fallback_text(deferral),
        blocks=slack_message.blocks(deferral, svc.settings.public_url),
    )


def refresh_messages(deferral_id: str, refs: list[str], svc: Services | None = None) -> int:
    """Update the deferral's Slack messages; how many were updated."""
    svc = svc or current_services()
    if not is_configured(svc.settings):
        return 0
    wanted = {ref for ref in (MessageRef.parse(r) for r in refs) if ref is not None}
    updated = 0
    with svc.db.read() as session:
        deferral = session.get(Deferral, deferral_id)
        if deferral is None:
            return 0
        for ref in sorted(wanted, key=str):
            try:
                update_message(svc, deferral, ref)
                updated += 1
            except SlackError as exc:
                log.warning("Slack message %s of %s not updated: %s", ref, deferral_id, exc)
    return updated


def reply(response_url: str, text: str) -> None:
    try:
        reply_privately(response_url, text)
    except SlackError as exc:
        log.warning("Slack reply not sent: %s", exc)


def post_message(svc: Services, deferral: Deferral, heading: str | None = None) -> MessageRef:
    """chat.postMessage the deferral to COUNTERSIGN_SLACK_CHANNEL; where it went."""
    answer = call(
        web_client(svc.settings),
        "chat.postMessage",
        channel=svc.settings.slack_channel,
        text=slack_message.fallback_text(deferral, heading),
        blocks=slack_message.blocks(deferral, svc.settings.public_url, heading=heading),
        mrkdwn=False,  # the fallback text: nothing in it is formatted
        unfurl_links=False,
        unfurl_media=False,
    )
    channel, ts = answer.get("channel"), answer.get("ts")
    if not (isinstance(channel, str) and isinstance(ts, str) and channel and ts):
        raise SlackRefused("chat.postMessage: the answer has no channel and ts")
    return MessageRef(channel, ts)
