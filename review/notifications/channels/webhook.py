"""A signed generic webhook (COUNTERSIGN_NOTIFY_WEBHOOK_URL): one POST per message,
signed as Standard Webhooks says (`webhook-id` = the message id, the same on every
retry; `webhook-timestamp`; `webhook-signature` v1 with the secret `notify secret` prints).

Body: `{"type": kind, "timestamp": ..., "data": {...}}`, kinds as in
review/notifications/kinds.py; for deferral kinds `data` is `{"tier": n, "deferrals":
[{id, url, agent, tool, summary, principal, risk: {level, score}, status, created_at,
expires_at}]}` (agent text as JSON strings: the receiver escapes it for its own sink),
for agent kinds the flip (`slug`, `state`, `reason`, `by`, `deferrals_ended`). The
webhook carries `deferral.decided` (its outcome event): a pager that opened an incident
for a deferral can close it.

The URL is the operator's, not an agent's: private addresses are allowed. Redirects are
not followed; one deadline (COUNTERSIGN_NOTIFY_DEADLINE) covers the attempt. A 2xx
delivers, 410 is a dead letter at once, anything else is retried (Retry-After honoured).
"""

from __future__ import annotations

import json

from review.callbacks import outbound
from review.models import User
from review.notifications import kinds
from review.notifications.channels.base import Message, Refused, TryLater
from review.notifications.secret import ensure_webhook_secret, webhook_secret
from review.resources import rfc3339
from review.services import Services
from review.settings import Settings
from review.signing import sign_headers


def body_of(message: Message) -> str:
    if message.kind in (kinds.AGENT_KILLED, kinds.AGENT_REVIVED):
        data = dict(message.payload)
    else:
        data = {
            "tier": message.tier,
            "deferrals": [
                {
                    "id": d.id,
                    "url": message.link(d.id),
                    "agent": d.agent.slug,
                    "tool": d.tool,
                    "summary": d.summary,
                    "principal": d.principal_id,
                    "risk": {"level": d.risk_level, "score": d.risk_score},
                    "status": d.status,
                    "created_at": rfc3339(d.created_at),
                    "expires_at": rfc3339(d.expires_at),
                }
                for d in message.deferrals
            ],
        }
        if message.kind == kinds.DIGEST:
            data.update(message.payload)
    body = {"type": message.kind, "timestamp": rfc3339(message.created_at), "data": data}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


class WebhookChannel:
    name = "webhook"
    personal = False
    kinds = frozenset(
        {
            kinds.WAITING,
            kinds.ESCALATED,
            kinds.EXPIRING,
            kinds.DECIDED,
            kinds.AGENT_KILLED,
            kinds.AGENT_REVIVED,
        }
    )

    def configured(self, settings: Settings) -> bool:
        return bool(settings.notify_webhook_url)

    def address_of(self, user: User) -> str | None:
        return None

    def deliver(self, svc: Services, message: Message) -> str:
        body = body_of(message)
        secret = webhook_secret(svc) or ensure_webhook_secret(svc)
        headers = sign_headers(secret, message.id, body)
        headers["Content-Type"] = "application/json"
        headers["User-Agent"] = "Countersign-Notifications"
        try:
            answer = outbound.post(
                svc.settings.notify_webhook_url,
                body.encode(),
                headers,
                allow_private=True,
                deadline=svc.settings.notify_deadline,
            )
        except outbound.OutboundRefused as exc:
            raise Refused(str(exc)) from None
        if answer.code is not None and 200 <= answer.code < 300:
            return f"HTTP {answer.code}"
        error = answer.error or f"HTTP {answer.code}"
        if answer.code == 410:
            raise Refused(error)
        retry_after = int(answer.retry_after) if (answer.retry_after or "").isdigit() else None
        raise TryLater(error, retry_after=retry_after)


CHANNEL = WebhookChannel()
