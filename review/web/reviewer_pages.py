"""The reviewer pages: the queue and one deferral's page; a batch's routes join this
blueprint from review/web/batch_pages.py. Thin views over review.reviewing; htmx
requests get partials, others full pages."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy.orm import Session

from review.agents.executions import VIOLATION
from review.callbacks import deliveries
from review.models import Deferral
from review.reviewing import claims, history, queue_reads
from review.reviewing.claims import Holder
from review.services import Services, current_services
from review.web.auth import DECIDERS, roles_required

bp = Blueprint("review", __name__)


@bp.after_request
def never_from_the_cache(response):
    """Reviewer pages show claims and live buttons: a page from the browser's cache (the
    back button) would offer decisions on a state that is gone (PROTOCOL.md section 16)."""
    response.headers["Cache-Control"] = "no-store"
    return response


# Quick picks for a rejection (keys 1 to 4 in an empty Reason field). Their labels avoid
# the words "approve" and "reject", so the Approve and Reject buttons keep unique names.
REJECT_REASONS = (
    "Needs more context",
    "Amount or scope too large",
    "Wrong target or recipient",
    "Against policy",
)


def holder() -> Holder:
    return Holder(current_user.id, current_user.username, frozenset(current_user.identities))


def is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


def card_context(svc: Services, session: Session, items: list[Deferral]) -> dict[str, Any]:
    """What every rendering of review/_card.html needs besides the deferral itself."""
    return {
        "reasons": REJECT_REASONS,
        "earlier": history.earlier_decisions(session, items),
        "approvals": queue_reads.approvals_of(session, items),
        "min_read": svc.settings.min_read_seconds,
    }


@bp.get("/queue")
@login_required
def queue():
    svc = current_services()
    flt = queue_reads.QueueFilter.parse(request.args)
    partial = is_htmx()
    with svc.db.read() as db:
        page = queue_reads.queue_page(
            db,
            svc.redis.client(),
            flt,
            holder() if current_user.can_decide else None,
            partial=partial,
        )
    context = dict(page=page, flt=flt, cap=queue_reads.COUNT_CAP)
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
    with svc.db.read() as db:
        item = _deferral_or_404(db, deferral_id)
        chain = queue_reads.evidence_chain(db, deferral_id)
        callbacks = deliveries.for_deferral(db, deferral_id)
        execution = item.execution if item.status == "approved" else None
        context = card_context(svc, db, [item])
    violations = [link for link in chain if link.event_type == VIOLATION]
    return render_template(
        "review/deferral.html",
        d=item,
        chain=chain,
        deliveries=callbacks,
        execution=execution,
        violations=violations,
        on_item_page=True,
        **context,
    )


@bp.get("/deferrals/<deferral_id>/callbacks")
@login_required
def deferral_callbacks(deferral_id: str):
    """The item page's callback panel, polled by htmx while a callback is on its way."""
    svc = current_services()
    with svc.db.read() as db:
        item = _deferral_or_404(db, deferral_id)
        callbacks = deliveries.for_deferral(db, deferral_id)
    return render_template("review/_callbacks.html", d=item, deliveries=callbacks)
