"""Edit, then approve (PROTOCOL.md section 10): a reviewer approves edited arguments.

Instead of rejecting and waiting for the agent to ask again, the reviewer who holds a
deferral changes `action.args` (the tool stays) and approves that. In one transaction
under the chain lock:

1. the edited action is scored again by the policy, with the deferral's own facts
   (agent, principal, labels, the before/after diff, the agent's claim) and the new
   arguments. Rules over a time window (review/intake/policy_windows.py) are not
   counted again: their counts already hold this deferral.
   A `deny` refuses the edit and changes nothing. An edit may raise the risk, never
   lower it: when the edited action scores a higher level, the deferral takes its score,
   level and factors; its quorum becomes the highest of its own, the new level's and
   the edited action's rules' (review/intake/policy_routes.py); its group stays;
2. `action` and `action_digest` become the edited ones; the agent's own action and
   digest are kept once, in `original_action` and `original_action_digest`, and
   `action_patch` holds the RFC 6902 patch from it (review/reviewing/patches.py).
   Approvals given before the edit were for another action: they are deleted
   (review/reviewing/approvals.py), and the event names them;
3. a `deferral.edited` event records the patch (between the actions as the audit log
   redacts them), both digests and the new evaluation;
4. the edit counts as the editor's approval: the deferral is approved (its receipt says
   `edited: true`), or, when its quorum needs more approvers, it goes back to the queue
   with the edited action, awaiting them (review/reviewing/decisions.py's `approve`).

The preconditions (held under a live lease, not ended, not expired) are
decisions.py's `held_for_decision`, so both say the same thing.

Execution reports must then carry the edited digest (review/agents/executions.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import rfc8785
from sqlalchemy import update

from review.audit.chain import chained_write, record_event
from review.intake import policy_routes, policy_windows
from review.intake.diffing import compute_diff
from review.intake.policy import LEVELS, Evaluation, Facts
from review.intake.preparation import action_digest
from review.models import Deferral, utcnow
from review.reviewing import approvals, decisions, undo
from review.reviewing.claims import Holder
from review.reviewing.decisions import Decided, DecisionRefused
from review.reviewing.live import note_changed
from review.reviewing.patches import action_patch, audited_patch
from review.reviewing.reading import assess
from review.services import Services

EDITED = "deferral.edited"
# `args` sits at depth 3 of a request body ({} > action {} > args {}): an edit may nest as
# deep as the API lets the agent's own arguments nest.
ARGS_DEPTH_OFFSET = 2


@dataclass(frozen=True)
class EditPreview:
    """What approving `args` would do, computed without writing anything."""

    action: dict[str, Any]  # the edited action
    digest: str
    patch: list[dict[str, Any]]  # from the agent's own action to the edited one
    diff: dict[str, Any]  # the agent's args against the edited args, as the pages show diffs
    evaluation: Evaluation  # the policy's verdict on the edited action
    level: str  # the deferral's level once edited: the higher of its own and the edit's
    approvals_needed: int  # distinct approvers that level needs
    refusal: str | None  # why the edit cannot be approved (the policy denies it); None: it can


def approvals_needed(svc: Services, deferral: Deferral, level: str, ev: Evaluation) -> int:
    """Distinct approvers the edited deferral needs: its own quorum, the (possibly
    raised) level's and the edited action's rules', whichever is highest."""
    return max(
        deferral.required_approvals or 1,
        policy_routes.required_approvals(svc.settings.two_person_level, level, ev.route),
    )


def original_action(deferral: Deferral) -> dict[str, Any]:
    """The action as the agent asked for it."""
    return deferral.original_action if deferral.original_action_digest else deferral.action


def check_args(svc: Services, args: Any) -> dict[str, Any]:
    """`args` when it can be an action's arguments: a JSON object within the API's size
    and depth limits, canonicalisable (RFC 8785); DecisionRefused saying what is wrong."""
    if not isinstance(args, dict):
        raise DecisionRefused("The arguments must be a JSON object ({...}).")
    try:
        size = len(rfc8785.dumps(args))
    except (rfc8785.CanonicalizationError, TypeError, ValueError, RecursionError) as exc:
        raise DecisionRefused(f"The arguments are not JSON the service can sign: {exc}") from None
    if size > svc.settings.max_body_bytes:
        raise DecisionRefused(
            f"The arguments are {size} bytes: over the limit of {svc.settings.max_body_bytes}."
        )
    limit = svc.settings.max_json_depth - ARGS_DEPTH_OFFSET
    if _depth(args) > limit:
        raise DecisionRefused(f"The arguments nest deeper than {limit} levels.")
    return args


def _depth(root: Any) -> int:
    deepest, stack = 0, [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, depth)
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _facts(deferral: Deferral, args: dict[str, Any]) -> Facts:
    """The facts intake judged, with the edited arguments."""
    diff = deferral.diff or {}
    changes = diff.get("changes") or []
    return Facts(
        tool=deferral.tool,
        args=args,
        principal_id=deferral.principal_id,
        principal_verified=deferral.principal_verified is not None,
        principal_groups=tuple((deferral.principal_verified or {}).get("groups") or ()),
        principal_identity=_verified_identity(deferral),
        labels=deferral.labels or {},
        changed_paths=[c["path"] for c in changes],
        change_count=diff.get("count", len(changes)),
        agent_score=(deferral.agent_risk or {}).get("score"),
        changes=changes,
        diff_truncated=bool(diff.get("truncated")),
        agent=deferral.agent.slug,
    )


def _with_windows(
    svc: Services, deferral: Deferral, facts: Facts, original: dict[str, Any]
) -> Facts:
    """The edited action judged by the window rules too, as intake judged the agent's.

    Intake already counted this deferral with the agent's arguments; the counts read
    now take that share out again (while it is inside the window), so the edited
    action is counted once, with its own amount. None (Redis could not say) leaves the
    window rules unjudged, which withholds any automatic allow, as at intake.
    """
    counters = policy_windows.counters_for(svc.policy, facts)
    if not counters:
        return facts
    windows = policy_windows.read(svc, counters)
    if windows:
        agents_args = replace(facts, args=original.get("args") or {})
        counted_at_intake = {
            c.rule: c for c in policy_windows.counters_for(svc.policy, agents_args)
        }
        age = (utcnow() - deferral.created_at).total_seconds()
        for counter in counters:
            earlier = counted_at_intake.get(counter.rule)
            seen = windows.get(counter.rule)
            if earlier is None or seen is None or earlier.key != counter.key:
                continue
            if age < earlier.window:
                windows[counter.rule] = policy_windows.Counted(
                    max(seen.count - 1, 1), seen.total - earlier.amount, seen.who
                )
    return replace(facts, windows=windows)


def _verified_identity(deferral: Deferral) -> str:
    """As review/intake/principals.py's Principal.identity: the verified e-mail, else the
    verified subject, else the claimed id."""
    verified = deferral.principal_verified or {}
    return verified.get("email") or verified.get("subject") or deferral.principal_id


def preview_edit(svc: Services, deferral: Deferral, args: Any) -> EditPreview:
    """The edited action, its patch, its diff and the policy's verdict on it."""
    args = check_args(svc, args)
    original = original_action(deferral)
    action = {"tool": deferral.tool, "args": args}
    evaluation = svc.policy.evaluate(_with_windows(svc, deferral, _facts(deferral, args), original))
    level = max(deferral.risk_level, evaluation.level, key=LEVELS.index)
    refusal = None
    if evaluation.outcome == "deny":
        refusal = (
            f"The policy denies the edited action ({evaluation.reason}). Nothing was "
            "approved: change the arguments again, approve the original or reject it."
        )
    diff = compute_diff(
        original.get("args", {}),
        args,
        max_changes=svc.settings.diff_max_changes,
        max_ms=svc.settings.diff_max_ms,
    )
    return EditPreview(
        action=action,
        digest=action_digest(action),
        patch=action_patch(original, action),
        diff=diff,
        evaluation=evaluation,
        level=level,
        approvals_needed=approvals_needed(svc, deferral, level, evaluation),
        refusal=refusal,
    )


def edit_and_approve(
    svc: Services,
    holder: Holder,
    deferral_id: str,
    args: Any,
    reason: str | None = None,
    now: datetime | None = None,
    seen_ms: int | None = None,
) -> Decided:
    """Approve the held deferral with `args` instead of the agent's, in one audited
    transaction (see the module's doc); DecisionRefused says why not. `seen_ms`: the
    time the item was in view, as for any decision (review/reviewing/reading.py). With
    COUNTERSIGN_UNDO_SECONDS > 0 it is checked now and held for that window, like any
    decision (review/reviewing/undo.py): the action changes when it takes effect."""
    now = now or utcnow()
    reason = (reason or "").strip() or None
    if reason and len(reason) > decisions.MAX_REASON:
        raise DecisionRefused(f"Keep the reason under {decisions.MAX_REASON} characters.")
    window = svc.settings.undo_seconds
    with chained_write(svc.db) as session:
        decided = edit_in(
            svc, session, holder, deferral_id, args, reason, now, seen_ms, window=window
        )
    if decided.effective_at is not None:
        undo.schedule(svc, decided.effective_at, now)
    decisions.after_decided(svc, decided)
    return decided


def edit_in(
    svc: Services,
    session,
    holder: Holder,
    deferral_id: str,
    args: Any,
    reason: str | None,
    now: datetime,
    seen_ms: int | None = None,
    *,
    window: int = 0,
    read_at: datetime | None = None,
    lease_required: bool = True,
) -> Decided:
    """The edit inside `session` (a chained_write), held for `window` seconds or taken
    now; as decisions.decide_in, whose arguments these are."""
    deferral = decisions.held_for_decision(session, deferral_id, holder, now, lease_required)
    if isinstance(deferral, Decided):
        return deferral
    if window and undo.held_decision(session, deferral.id) is not None:
        raise DecisionRefused("Nothing changed: you decided it already. Undo it to decide again.")
    decisions.check_may_approve(deferral, holder)
    preview = preview_edit(svc, deferral, args)
    if preview.refusal:
        raise DecisionRefused(preview.refusal)
    if preview.digest == deferral.action_digest:
        raise DecisionRefused("Nothing changed: the arguments are the ones shown. Use Approve.")
    reading = assess(seen_ms, deferral.claimed_at, read_at or now, svc.settings.min_read_seconds)
    if deferral.canary:  # edited or not, approving a known-bad item is a miss; never held
        decisions._renew_lease(session, svc, holder, now)
        return decisions.canary_decided(session, deferral, holder, "approve", reason, now, reading)
    if window:
        decisions._renew_lease(session, svc, holder, now)
        undo.hold(session, deferral, holder, "approve", reason, seen_ms, now, window, args)
        short = preview.approvals_needed > 1
        then = " (short of its quorum, it then goes back to the queue)" if short else ""
        return Decided(
            deferral.id,
            "pending" if short else "approved",
            f"Approved as edited: Undo (key u) until it takes effect{then}."
            + decisions._fast_note(reading),
            fast=not reading.read,
            effective_at=now + timedelta(seconds=window),
        )
    _store_edit(svc, session, deferral, holder, preview, now, lease_required)
    session.refresh(deferral)
    if lease_required:
        decisions._renew_lease(session, svc, holder, now)
    decided = decisions.approve(
        svc, session, deferral, holder, reason, now, reading, lease_required=lease_required
    )
    if decided.status == "pending":
        return Decided(
            deferral.id,
            "pending",
            f"Edited, and your approval is 1 of {preview.approvals_needed}: a "
            f"{preview.level} action goes back to the queue for another reviewer.",
        )
    return Decided(
        decided.deferral_id,
        decided.status,
        "Approved as edited." + decisions._fast_note(reading),
        agent_slug=decided.agent_slug,
        rejection_limit=decided.rejection_limit,
        fast=decided.fast,
    )


def _store_edit(
    svc: Services,
    session,
    deferral: Deferral,
    holder: Holder,
    preview: EditPreview,
    now: datetime,
    lease_required: bool = True,
) -> None:
    """The conditional UPDATE (the reviewer's claim must still hold) and its event."""
    original = original_action(deferral)
    original_digest = deferral.original_action_digest or deferral.action_digest
    back_to_original = preview.digest == original_digest
    values: dict[str, Any] = {
        "action": preview.action,
        "action_digest": preview.digest,
        "original_action": None if back_to_original else original,
        "original_action_digest": None if back_to_original else original_digest,
        "action_patch": None if back_to_original else preview.patch,
        "required_approvals": preview.approvals_needed,
    }
    ev = preview.evaluation
    raised = LEVELS.index(ev.level) > LEVELS.index(deferral.risk_level)
    if raised:
        values.update(
            risk_score=ev.score,
            risk_level=ev.level,
            risk_factors=ev.factors,
            policy_version=ev.policy_version,
        )
    table = Deferral.__table__
    held = [table.c.id == deferral.id, table.c.status == "in_review"]
    held.append(table.c.claimed_by == holder.id)
    if lease_required:
        held.append(table.c.lease_expires_at >= now)
    done = session.execute(update(table).where(*held).values(**values)).rowcount
    if done != 1:
        raise DecisionRefused("Nothing changed: someone else acted on it first.")
    note_changed(session, deferral.id)
    voided = approvals.void_approvals(session, deferral.id)  # they were for another action
    record_event(
        session,
        actor_kind="user",
        actor_id=holder.username,
        event_type=EDITED,
        agent=deferral.agent.slug,
        deferral_id=deferral.id,
        payload={
            "original_action_digest": original_digest,
            "previous_action_digest": deferral.action_digest,
            "action_digest": preview.digest,
            "action_patch": audited_patch(svc.redactor, original, preview.action),
            "evaluation": ev.as_risk(),
            "risk_level": preview.level,
            "level_raised": raised,
            "approvals_needed": preview.approvals_needed,
            "approvals_voided": voided,
        },
        at=now,
    )
