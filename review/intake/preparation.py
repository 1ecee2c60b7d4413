"""Preparing a deferral request: everything computed from it before the database.

The principal (a token that does not verify refuses the request before any work, and
leaves the body here, before it is hashed, stored or audited), the diff of before and
after, the policy's evaluation (with its window counts, one Redis round trip), the
route, the digests and what the audit log keeps of it (configured paths redacted).
None of it needs a lock (review/intake/deferrals.py then stores it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import select

from review.audit.hashing import canonical_json
from review.groups import Group
from review.intake import policy_routes, policy_windows
from review.intake.diffing import ABSENT, compute_diff
from review.intake.policy import Evaluation, Facts
from review.intake.principals import Principal, read_principal, without_token
from review.services import Services


def action_digest(action: dict[str, Any]) -> str:
    """SHA-256 of the RFC 8785 canonical JSON of the action (PROTOCOL.md section 5)."""
    return "sha256:" + hashlib.sha256(canonical_json(action)).hexdigest()


def request_hash(body: dict[str, Any]) -> str:
    """Tells a retry (same JSON, however it was spaced or ordered) from a different request."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Prepared:
    """Everything computed from the request before touching the database."""

    body: dict[str, Any]
    request_hash: str
    digest: str
    diff: dict[str, Any]
    evaluation: Evaluation
    # The action and state as the audit log keeps them (configured paths redacted).
    audit_action: dict[str, Any]
    audit_state: dict[str, Any]
    principal: Principal
    audit_intent: Any  # the intent as the audit log keeps it (redactable: path `intent`)
    counters: list[policy_windows.Counter] = field(default_factory=list)  # added once stored
    # The reviewer group and quorum (review/intake/policy_routes.py); None: any, by level.
    routed: policy_routes.Routed | None = None


def prepare(svc: Services, body: dict[str, Any], agent_slug: str | None = None) -> Prepared:
    s = svc.settings
    # The principal first: a token that does not verify refuses the request before any
    # work, and the token leaves the body here, before it is hashed, stored or audited.
    principal = read_principal(
        svc.principal_keys,
        body["on_behalf_of"],
        audience=s.principal_audience,
        groups_claim=s.principal_groups_claim,
    )
    body = without_token(body)
    diff = compute_diff(
        body.get("before", ABSENT),
        body.get("after", ABSENT),
        max_changes=s.diff_max_changes,
        max_ms=s.diff_max_ms,
    )
    action = body["action"]
    facts = Facts(
        tool=action["tool"],
        args=action["args"],
        principal_id=body["on_behalf_of"]["id"],
        principal_verified=principal.verified,
        principal_groups=principal.groups,
        principal_identity=principal.identity,
        agent=agent_slug,
        labels=body.get("labels", {}),
        changed_paths=[c["path"] for c in diff["changes"]],
        change_count=diff["count"],
        agent_score=body.get("risk", {}).get("score"),
        changes=diff["changes"],
        diff_truncated=diff["truncated"],
    )
    # Context: the window rules' counts, one Redis round trip (review/intake/policy_windows.py).
    counters = policy_windows.counters_for(svc.policy, facts)
    if counters:
        facts = replace(facts, windows=policy_windows.read(svc, counters))
    redact = svc.redactor.apply
    evaluation = svc.policy.evaluate(facts)
    return Prepared(
        body,
        request_hash(body),
        action_digest(action),
        diff,
        evaluation,
        audit_action=redact("action", action),
        audit_state={k: redact(k, body[k]) for k in ("before", "after") if k in body},
        principal=principal,
        audit_intent=redact("intent", body["intent"]) if "intent" in body else None,
        counters=counters,
        routed=route_of(svc, evaluation),
    )


def route_of(svc: Services, ev: Evaluation) -> policy_routes.Routed:
    """The evaluation's route, with the group looked up (only when a rule names one)."""
    exists = True
    if ev.route.group is not None:
        with svc.db.read() as session:
            exists = (
                session.scalar(select(Group.name).where(Group.name == ev.route.group)) is not None
            )
    return policy_routes.resolve(ev.route, svc.settings.two_person_level, ev.level, exists)
