"""`POST /integrations/slack/interactions`: Slack's signed interaction requests
(PROTOCOL.md section 14). Thin: verify, parse, hand to
review/notifications/channels/slack_actions.py, answer, queue the follow-ups.

There is no browser session here, so the route is exempt from CSRF (app_factory);
Slack's signature is what proves the request. 401 for anything that is not a fresh,
first-seen request signed with COUNTERSIGN_SLACK_SIGNING_SECRET; 404 while Slack is not
configured; 400 for a signed body that is not an interaction payload.
"""

from __future__ import annotations

import logging

import redis
from flask import Blueprint, jsonify, request

from approval_queue import names
from approval_queue.jobs import enqueue
from review.notifications.channels import slack_actions, slack_requests
from review.notifications.channels.slack_api import is_configured
from review.services import current_services

log = logging.getLogger(__name__)
bp = Blueprint("slack", __name__)


def _refusal(status: int, message: str):
    response = jsonify({"error": message})
    response.status_code = status
    return response


@bp.post("/integrations/slack/interactions")
def interactions():
    svc = current_services()
    if not is_configured(svc.settings):
        return _refusal(404, "Slack is not configured here.")
    if (request.content_length or 0) > slack_requests.MAX_BODY_BYTES:
        return _refusal(413, "Too large for a Slack interaction.")
    body = request.get_data(cache=True)[: slack_requests.MAX_BODY_BYTES + 1]
    try:
        slack_requests.verify(
            svc.settings.slack_signing_secret, svc.redis.client(), body, request.headers
        )
    except slack_requests.BadSlackRequest:
        return _refusal(401, "Not a valid Slack request.")
    try:
        payload = slack_requests.payload_of(body)
        answer = slack_actions.handle(svc, payload)
    except slack_requests.MalformedPayload as exc:
        return _refusal(400, f"Not a Slack interaction we can read: {exc}.")
    _queue(svc, answer.follow_ups)
    if answer.body is None:
        return "", 200
    return jsonify(answer.body)


def _queue(svc, follow_ups) -> None:
    """The worker makes the Web API calls that only report (slack_actions' docstring)."""
    if not follow_ups:
        return
    try:
        client = svc.redis.client()
        for func, args, delay in follow_ups:
            enqueue(client, func, *args, queue_name=names.DEFAULT, delay=delay or None)
    except redis.RedisError as exc:
        log.warning("Slack follow-ups not queued (%s): the decision stands; notices lost", exc)
