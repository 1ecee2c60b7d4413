"""Worker jobs for Slack's follow-ups (enqueued by dotted name, with ids and strings).

`refresh_messages` rewrites each Slack message of a deferral (chat.update, on the
channel:ts stored with its delivery) from the deferral as it is now, so running it
twice, late, or out of order still leaves the messages true. `reply` shows a refusal
to the one person who clicked. Neither is retried: the notifications core retries the
messages it owns (and its deferral.decided follow-up rewrites them again); a reply that
did not arrive is a lost notice, and the decision it was about is in the database.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from review.models import Deferral
from review.notifications import kinds
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
from review.notifications.models import Notification, NotificationItem
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


def posted_refs(session, deferral_id: str) -> list[MessageRef]:
    """Where the Slack messages about the deferral are: the channel:ts the notifications
    core stored on each delivered message (summaries of many deferrals excluded)."""
    refs = session.scalars(
        select(Notification.provider_ref)
        .join(NotificationItem, NotificationItem.notification_id == Notification.id)
        .where(
            NotificationItem.deferral_id == deferral_id,
            Notification.channel == "slack",
            Notification.status == "delivered",
            Notification.kind != kinds.DECIDED,
        )
        .order_by(Notification.created_at)
    )
    return [ref for ref in (MessageRef.parse(r or "") for r in refs) if ref is not None]


def refresh_messages(deferral_id: str, svc: Services | None = None) -> int:
    """Update every Slack message about the deferral; how many were updated."""
    svc = svc or current_services()
    if not is_configured(svc.settings):
        return 0
    updated = 0
    with svc.db.read() as session:
        deferral = session.get(Deferral, deferral_id)
        if deferral is None:
            return 0
        for ref in posted_refs(session, deferral_id):
            try:
                update_message(svc, deferral, ref)
                updated += 1
            except SlackError as exc:
                log.warning("Slack message %s of %s not updated: %s", ref, deferral_id, exc)
    return updated


def reply(response_url: str, text: str, undo_of: str = "") -> None:
    try:
        reply_privately(response_url, text, undo_of)
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
