"""How an open canary's audit chain reads on its page to a reviewer.

The log itself is truthful: a canary's first event is `canary.seeded` by whoever seeded
it, and its `deferral.evaluated` is theirs too (review/canaries/seeding.py). Shown like
that on the item's page, the chain would tell a reviewer what the item is before they
decide. So while the canary is open, reviewers (not admins, not auditors, who see the
log as it is here and on /audit) see those two events as an agent's intake shows them:
`deferral.received` and `deferral.evaluated` by the agent, without the canary's kind.
Once it has ended, everyone sees the chain as recorded.
"""

from __future__ import annotations

from dataclasses import replace

from review.models import PENDING_STATUSES, Deferral
from review.reviewing.queue_reads import ChainLink

SEES_THROUGH = ("admin", "auditor")


def chain_as_seen(chain: list[ChainLink], deferral: Deferral, role: str) -> list[ChainLink]:
    if not deferral.canary or role in SEES_THROUGH or deferral.status not in PENDING_STATUSES:
        return chain
    agent = f"agent:{deferral.agent.slug}"
    shown = []
    for link in chain:
        if link.event_type == "canary.seeded":
            payload = {k: v for k, v in link.payload.items() if k != "canary"}
            link = replace(link, event_type="deferral.received", actor=agent, payload=payload)
        elif link.event_type == "deferral.evaluated":
            link = replace(link, actor=agent)
        shown.append(link)
    return shown
