"""The reviewer pages: the queue and one deferral's page; a batch's routes join this
blueprint from review/web/batch_pages.py. Thin views over review.reviewing; htmx
requests get partials, others full pages."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy.orm import Session

from review.agents.executions import VIOLATION
from review.callbacks import deliveries
from review.canaries.disguise import chain_as_seen
from review.models import Deferral, PendingDecision, utcnow
from review.reviewing import claims, history, live, queue_reads, set_aside, undo
from review.reviewing.claim_barriers import Barrier, barriers_for
from review.reviewing.claims import Holder
from review.reviewing.taking_effect import take_effect_if_due
from review.services import Services, current_services
from review.web.auth import DECIDERS, roles_required

bp = Blueprint("review", __name__)


@bp.after_request
def never_from_the_cache(response):
    """Reviewer pages show claims and live buttons: a page from the browser's cache (the
    back button) would offer decisions on a state that is gone (PROTOCOL.md section 16)."""
    response.headers["Cache-Control"] = "no-store"
    return response


# "Not before" choices for a snooze, in minutes (review/reviewing/set_aside.py takes any
# time before the deferral expires).
SNOOZE_CHOICES = ((15, "15 minutes"), (60, "1 hour"), (240, "4 hours"), (1440, "1 day"))

# Quick picks for a rejection (keys 1 to 4 in an empty Reason field). Their labels avoid
# the words "approve" and "reject", so the Approve and Reject buttons keep unique names.
REJECT_REASONS = (
    "Needs more context",
    "Amount or scope too large",
    "Wrong target or recipient",
    "Against policy",
)


def batch_poll_url(version: int) -> str:
    """What a batch polls to stay live (review/web/live_pages.py); static/review.js adds
    the ids of the cards still to decide."""
    return url_for("live.batch", v=version)


def queue_poll_url(version: int, flt: queue_reads.QueueFilter) -> str:
    """What the queue polls to stay live, with its filters and when it was rendered."""
    return url_for("live.queue", v=version, t=int(time.time()), **flt.query())


def holder() -> Holder:
    return Holder(current_user.id, current_user.username, frozenset(current_user.identities))


def is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


def card_context(
    svc: Services,
    session: Session,
    items: list[Deferral],
    *,
    lazy_panels: bool = False,
    held: dict[str, PendingDecision] | None = None,
) -> dict[str, Any]:
    """What every rendering of review/_card.html needs besides the deferral itself:
    `held`, the decisions still in their undo window (review/reviewing/undo.py).

    `lazy_panels` (the batch page): the editor and the snooze and hand-over forms are
    fetched when the reviewer opens them (edit_pages.editor_form,
    set_aside_pages.set_aside_panel), so whom to hand over to is not read here. `held`:
    the items' decisions held for undo, when the caller has read them already."""
    now = utcnow()
    if held is None:
        held = undo.held_decisions(session, [d.id for d in items])
    given = queue_reads.approvals_of(session, items)
    return {
        "reasons": REJECT_REASONS,
        "earlier": history.earlier_decisions(session, items),
        "approvals": given,
        "snooze_choices": SNOOZE_CHOICES,
        # Snooze and hand over, offered on a card its viewer holds (review/_set_aside.html).
        "hand_over_to": (
            set_aside.hand_over_choices(session, holder())
            if not lazy_panels
            and current_user.can_decide
            and any(d.claimed_by == current_user.id for d in items)
            else []
        ),
        "lazy_panels": lazy_panels,
        "min_read": svc.settings.min_read_seconds,
        "held": {
            d.id: HeldCard(
                _held_outcome(held[d.id], d, given.get(d.id, [])),
                max(int((held[d.id].effective_at - now).total_seconds() * 1000), 0),
            )
            for d in items
            if d.id in held and d.status == "in_review"  # not one a kill has beaten
        },
    }


@dataclass(frozen=True)
class HeldCard:
    outcome: str  # what the decision will make of it: approved, rejected, pending (short)
    ms_left: int  # of its undo window


def _held_outcome(held, d: Deferral, given: list[str]) -> str:
    if held.verdict == "reject":
        return "rejected"
    return "pending" if len(given) + 1 < d.required_approvals else "approved"


@bp.get("/queue")
@login_required
def queue():
    svc = current_services()
    flt = queue_reads.QueueFilter.parse(request.args)
    partial = is_htmx()
    # Before the read: no change falls between.
    version = live.version_after_arrivals(svc.arrivals, svc.redis.client())
    with svc.db.read() as db:
        page = queue_reads.queue_page(
            db,
            svc.redis.client(),
            flt,
            holder() if current_user.can_decide else None,
            partial=partial,
        )
    context = dict(
        page=page,
        flt=flt,
        cap=queue_reads.COUNT_CAP,
        now=utcnow(),
        poll=queue_poll_url(version, flt),
    )
    if partial:
        return render_template("review/_queue_body.html", **context)
    return render_template("review/queue.html", **context)


@bp.post("/deferrals/<deferral_id>/claim")
@roles_required(*DECIDERS)
def claim_one(deferral_id: str):
    """Claim one item from the queue or its own page, then decide it on its page."""
    try:
        claims.claim_one(current_services(), holder(), deferral_id)
    except claims.NotTakeable as refused:
        flash(f"Not claimed: {refused.message}", "error")
    return redirect(url_for("review.deferral", deferral_id=deferral_id))


def _deferral_or_404(db, deferral_id: str) -> Deferral:
    item = db.get(Deferral, deferral_id)
    if item is None:
        abort(404)
    return item


@bp.get("/deferrals/<deferral_id>")
@login_required
def deferral(deferral_id: str):
    svc = current_services()
    take_effect_if_due(svc, [deferral_id])
    with svc.db.read() as db:
        item = _deferral_or_404(db, deferral_id)
        chain = chain_as_seen(queue_reads.evidence_chain(db, deferral_id), item, current_user.role)
        callbacks = deliveries.for_deferral(db, deferral_id)
        execution = item.execution if item.status == "approved" else None
        context = card_context(svc, db, [item])
        barrier = _claim_barrier(db, item)
    violations = [link for link in chain if link.event_type == VIOLATION]
    return render_template(
        "review/deferral.html",
        d=item,
        chain=chain,
        deliveries=callbacks,
        execution=execution,
        violations=violations,
        on_item_page=True,
        barrier=barrier,
        **context,
    )


def _claim_barrier(db: Session, item: Deferral) -> Barrier | None:
    """Why the reviewer may not claim this pending item (shown instead of Claim)."""
    if item.status != "pending" or not current_user.can_decide:
        return None
    me = holder()
    return barriers_for(db, [item], me, claims.standing(db, me), utcnow()).get(item.id)


@bp.get("/deferrals/<deferral_id>/callbacks")
@login_required
def deferral_callbacks(deferral_id: str):
    """The item page's callback panel, polled by htmx while a callback is on its way."""
    svc = current_services()
    with svc.db.read() as db:
        item = _deferral_or_404(db, deferral_id)
        callbacks = deliveries.for_deferral(db, deferral_id)
    return render_template("review/_callbacks.html", d=item, deliveries=callbacks)
