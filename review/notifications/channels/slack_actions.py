"""What a verified Slack interaction does: Approve decides, Reject asks for a reason in
a modal and decides when it is submitted, the link button does nothing here.

Slack wants an answer within 3 seconds. Before answering, this does only what the
answer depends on: the decision itself (a database transaction, as the browser's), the
clicker's e-mail from `users.info` when it is not cached (one quick call), and, for
Reject, `views.open` (its trigger_id is good for 3 seconds, so it cannot wait).
Everything that only reports comes after, in the worker (`follow_ups`, run by
review/notifications/channels/slack_jobs.py): the message updated in place for everyone
with `chat.update`, and a refusal shown only to the person who clicked (through the
interaction's response_url). A lost follow-up loses a notice, never a decision.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from review.models import Deferral, utcnow
from review.notifications.channels import slack_message
from review.notifications.channels.slack_api import (
    QUICK_TIMEOUT,
    UNDO,
    SlackError,
    call,
    web_client,
)
from review.notifications.channels.slack_decisions import decide_from_slack
from review.notifications.channels.slack_people import NotAReviewer, SlackUser, reviewer_for
from review.notifications.channels.slack_requests import MalformedPayload, text_at
from review.notifications.channels.slack_text import cut, escape, plain
from review.reviewing import undo
from review.reviewing.decisions import MAX_REASON
from review.services import Services

REASON_VIEW = "countersign_reject_reason"  # callback_id of the modal
REASON_BLOCK = "reason"
REASON_ACTION = "reason_text"
REFRESH_JOB = "review.notifications.channels.slack_jobs.refresh_messages"
REPLY_JOB = "review.notifications.channels.slack_jobs.reply"
SLACK_HOOKS = "https://hooks.slack.com/"


@dataclass
class Answer:
    """The HTTP answer to Slack (a JSON body, or an empty 200) and the work for later."""

    body: dict[str, Any] | None = None
    follow_ups: list[tuple[str, tuple[Any, ...], float]] = field(default_factory=list)

    def refresh(self, deferral_id: str, after: float = 0) -> Answer:
        """Update the deferral's messages (`after` seconds from now: a decision held for
        its undo window shows once it has taken effect)."""
        job = (REFRESH_JOB, (deferral_id,), after)
        self.follow_ups.append(job)
        return self

    def reply(self, response_url: str, text: str, undo_of: str = "") -> Answer:
        """Tell the clicker alone; `undo_of`: with an Undo button for that deferral."""
        if response_url:
            self.follow_ups.append((REPLY_JOB, (response_url, escape(text), undo_of), 0))
        return self


def handle(svc: Services, payload: dict[str, Any]) -> Answer:
    kind = payload["type"]
    if kind == "block_actions":
        return _block_actions(svc, payload)
    if kind == "view_submission" and text_at(payload, "view", "callback_id") == REASON_VIEW:
        return _reason_submitted(svc, payload)
    return Answer()  # view_closed, shortcuts, ...: nothing to do, and Slack wants its 200


def _slack_user(payload: dict[str, Any]) -> SlackUser:
    user_id = text_at(payload, "user", "id")
    team = text_at(payload, "team", "id") or text_at(payload, "user", "team_id")
    if not user_id:
        raise MalformedPayload("no user")
    return SlackUser(team, user_id)


def reply_url(svc: Services, payload: dict[str, Any]) -> str:
    """The interaction's response_url, if it points at Slack (or at the Web API's host,
    which tests set to a local stand-in): we never post where a payload merely says."""
    url = text_at(payload, "response_url")
    api = urlsplit(svc.settings.slack_api_url)
    given = urlsplit(url)
    same_host = (given.scheme, given.netloc) == (api.scheme, api.netloc)
    return url if url.startswith(SLACK_HOOKS) or (url and same_host) else ""


def _block_actions(svc: Services, payload: dict[str, Any]) -> Answer:
    actions = payload.get("actions")
    action = actions[0] if isinstance(actions, list) and actions else {}
    action_id = text_at(action, "action_id")
    deferral_id = text_at(action, "value")
    if action_id not in (slack_message.APPROVE, slack_message.REJECT, UNDO) or not deferral_id:
        return Answer()  # the link button: Slack reports its clicks too
    user = _slack_user(payload)
    response_url = reply_url(svc, payload)
    if action_id == slack_message.REJECT:
        return _ask_reason(svc, payload, deferral_id, response_url)
    try:
        holder = reviewer_for(svc, user)
    except NotAReviewer as refused:
        return Answer().reply(response_url, f"Not approved: {refused.message}")
    if action_id == UNDO:
        return _undo(svc, holder, deferral_id, response_url)
    outcome = decide_from_slack(svc, holder, deferral_id, "approve")
    answer = Answer().refresh(deferral_id, after=_until(outcome.effective_at))
    if not outcome.done:
        answer.reply(response_url, f"Not approved: {outcome.message}")
    elif outcome.effective_at is not None:
        answer.reply(response_url, outcome.message, undo_of=deferral_id)
    return answer


def _undo(svc: Services, holder, deferral_id: str, response_url: str) -> Answer:
    """The reply's Undo button: the browser's undo (review/reviewing/undo.py), for the
    same person, while the window is open."""
    try:
        undone = undo.undo(svc, holder, deferral_id)
    except undo.UndoRefused as refused:
        return Answer().reply(response_url, refused.message)
    return Answer().refresh(deferral_id).reply(response_url, undone.message)


def _until(effective_at) -> float:
    """Seconds until a held decision takes effect, and one more (0: it has)."""
    if effective_at is None:
        return 0
    return max(0.0, (effective_at - utcnow()).total_seconds()) + 1


def _ask_reason(
    svc: Services, payload: dict[str, Any], deferral_id: str, response_url: str
) -> Answer:
    """Open the reason modal now (its trigger_id lapses in 3 s); who the person is, and
    whether they may reject, is checked when they submit it."""
    metadata = json.dumps({"deferral": deferral_id})
    view = {
        "type": "modal",
        "callback_id": REASON_VIEW,
        "private_metadata": metadata,
        "title": plain("Reject", 24),
        "submit": plain("Reject", 24),
        "close": plain("Cancel", 24),
        "blocks": [
            {"type": "section", "text": plain(_summary_of(svc, deferral_id))},
            {
                "type": "input",
                "block_id": REASON_BLOCK,
                "label": plain("Why do you reject it?", 2000),
                "element": {
                    "type": "plain_text_input",
                    "action_id": REASON_ACTION,
                    "multiline": True,
                    "max_length": MAX_REASON,
                },
            },
        ],
    }
    try:
        call(
            web_client(svc.settings, QUICK_TIMEOUT),
            "views.open",
            trigger_id=text_at(payload, "trigger_id"),
            view=view,
        )
    except SlackError as exc:
        link = slack_message.deferral_link(svc.settings.public_url, deferral_id)
        return Answer().reply(
            response_url,
            f"Slack did not open the form for your reason ({exc.message}). "
            f"Try again, or reject it on its page: {link}",
        )
    return Answer()


def _summary_of(svc: Services, deferral_id: str) -> str:
    """What the person is rejecting, in the agent's words (plain_text, escaped)."""
    with svc.db.read() as session:
        deferral = session.get(Deferral, deferral_id)
        return deferral.summary if deferral is not None else "No such deferral."


def _reason_submitted(svc: Services, payload: dict[str, Any]) -> Answer:
    try:
        metadata = json.loads(text_at(payload, "view", "private_metadata"))
        deferral_id = str(metadata["deferral"])
    except (ValueError, KeyError, TypeError):
        raise MalformedPayload("no deferral in the modal's metadata") from None
    reason = text_at(
        payload, "view", "state", "values", REASON_BLOCK, REASON_ACTION, "value"
    ).strip()
    if not reason:
        return _inline_error("Say why you reject it.")
    try:
        holder = reviewer_for(svc, _slack_user(payload))
    except NotAReviewer as refused:
        return _inline_error(f"Not rejected: {refused.message}")
    outcome = decide_from_slack(svc, holder, deferral_id, "reject", reason)
    if not outcome.done:
        return _inline_error(f"Not rejected: {outcome.message}").refresh(deferral_id)
    # An empty 200 closes the modal.
    return Answer().refresh(deferral_id, after=_until(outcome.effective_at))


def _inline_error(text: str) -> Answer:
    """The modal stays open with `text` under the reason field."""
    return Answer({"response_action": "errors", "errors": {REASON_BLOCK: cut(escape(text), 500)}})
