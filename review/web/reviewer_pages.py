"""The reviewer pages: the queue, a batch, one deferral. Thin views over review.batches,
review.decisions and review.listing; htmx requests get partials, others full pages."""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required

from review.agents.executions import VIOLATION
from review.callbacks import deliveries
from review.models import Deferral, utcnow
from review.reviewing import claims, queue_reads
from review.reviewing.claims import Holder
from review.reviewing.decisions import DecisionRefused, decide, decide_many
from review.services import current_services
from review.web.auth import DECIDERS, roles_required

bp = Blueprint("review", __name__)


@bp.after_request
def never_from_the_cache(response):
    """Reviewer pages show claims and live buttons: a page from the browser's cache (the
    back button) would offer decisions on a state that is gone (PROTOCOL.md section 16)."""
    response.headers["Cache-Control"] = "no-store"
    return response


# Quick picks for a rejection. Their labels avoid the words "approve" and "reject", so
# the Approve and Reject buttons keep unique accessible names.
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


@bp.post("/batch/start")
@roles_required(*DECIDERS)
def start_batch():
    ids = claims.claim_batch(current_services(), holder())
    if not ids:
        flash("Nothing to review right now: the queue has nothing you may take.", "info")
        return redirect(url_for("review.queue"))
    return redirect(url_for("review.batch"))


@bp.post("/batch/release")
@roles_required(*DECIDERS)
def release_batch():
    count = claims.release_batch(current_services(), holder())
    flash(f"Gave {count} item{'s' if count != 1 else ''} back to the queue.", "info")
    return redirect(url_for("review.queue"))


@bp.get("/batch")
@roles_required(*DECIDERS)
def batch():
    svc = current_services()
    with svc.db.read() as db:
        ids = claims.held_ids(db, holder(), utcnow())
        items = queue_reads.batch_items(db, ids)
    return render_template(
        "review/batch.html",
        items=items,
        reasons=REJECT_REASONS,
        lease_seconds=svc.settings.lease_seconds,
    )


@bp.post("/batch/<deferral_id>/open")
@roles_required(*DECIDERS)
def open_item(deferral_id: str):
    """The reviewer looked at an item: it may now be approved in bulk; the lease renews."""
    claims.touch(current_services(), holder(), deferral_id)
    return ("", 204)


@bp.post("/batch/selected/<verdict>")
@roles_required(*DECIDERS)
def decide_selected(verdict: str):
    if verdict not in ("approve", "reject"):
        abort(404)
    ids = request.form.getlist("ids")[:100]
    if not ids:
        flash("Select items first (the Select box on each card).", "error")
        return redirect(url_for("review.batch"))
    svc = current_services()
    result = decide_many(svc, holder(), ids, verdict, request.form.get("reason"))
    if result.done:
        word = "Approved" if verdict == "approve" else "Rejected"
        flash(f"{word} {len(result.done)} item{'s' if len(result.done) != 1 else ''}.", "ok")
    for deferral_id, why in result.skipped:
        flash(f"Skipped {deferral_id}: {why}", "error")
    return redirect(url_for("review.batch"))


@bp.post("/batch/<deferral_id>/<verdict>")
@roles_required(*DECIDERS)
def decide_item(deferral_id: str, verdict: str):
    if verdict not in ("approve", "reject"):
        abort(404)
    svc = current_services()
    # A quick-reason button submits its own "reason" after the typed one: the last wins.
    given = [r for r in request.form.getlist("reason") if r.strip()]
    reason = given[-1] if given else ""
    try:
        outcome = decide(svc, holder(), deferral_id, verdict, reason)
        message, kind = outcome.message, "ok"
    except DecisionRefused as refused:
        message, kind = str(refused), "error"
    if not is_htmx():
        flash(message, kind)
        return redirect(url_for("review.batch"))
    with svc.db.read() as db:
        item = db.get(Deferral, deferral_id)
    return render_template(
        "review/_card.html",
        d=item,
        reasons=REJECT_REASONS,
        notice=message,
        notice_kind=kind,
        decided=True,
    )


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
    violations = [link for link in chain if link.event_type == VIOLATION]
    return render_template(
        "review/deferral.html",
        d=item,
        chain=chain,
        reasons=REJECT_REASONS,
        deliveries=callbacks,
        execution=execution,
        violations=violations,
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
