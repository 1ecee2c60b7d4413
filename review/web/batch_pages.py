"""A reviewer's batch: start it (from the queue as filtered), show it, decide its items
one at a time or several at once, give it back. Routes of the `review` blueprint
(review/web/reviewer_pages.py).

A decision answers htmx with the card as it is now, the batch's count of items left
and the page's status line (out-of-band swaps), so the page stays true without a
reload. The time the reviewer had the card in view comes with the decision
(`seen_ms`, measured by static/review.js): there is no request for "opened".
"""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for

from review.canaries.deciding import CAUGHT_MESSAGE, MISSED_MESSAGE
from review.models import Deferral, utcnow
from review.reviewing import claims, live, queue_reads, undo
from review.reviewing.bulk import decide_many
from review.reviewing.decisions import Decided, DecisionRefused, decide, ended_how
from review.reviewing.reading import parse_ms
from review.reviewing.taking_effect import take_effect_if_due
from review.services import current_services
from review.web.auth import DECIDERS, roles_required
from review.web.reviewer_pages import (
    HeldCard,
    batch_poll_url,
    bp,
    card_context,
    holder,
    is_htmx,
)

FILTER_KEYS = ("agent", "level", "label", "q")  # the queue's filters, carried by a batch
# What static/review.js adds to a Start batch form's post: answer with the page itself.
START_ANSWER = "page"


def _filters(source) -> dict[str, str]:
    """The queue's filters from a form or a query string, only those set."""
    return {k: source.get(k, "").strip() for k in FILTER_KEYS if source.get(k, "").strip()}


@bp.post("/batch/start")
@roles_required(*DECIDERS)
def start_batch():
    """Claim a batch from the queue as filtered (PROTOCOL.md section 16): the form of
    the queue page, and Next batch at the end of one, send the filters along.

    A browser running static/review.js sends `answer=page` (START_ANSWER) and gets the
    batch page itself: a redirect to GET /batch would be a second request (session,
    user, the held ids again), a third of a batch's page cost; the script puts the
    page's own address (/batch) in the location bar, so a reload reads the batch. A plain
    form post (no JS) gets 303 to GET /batch, so its reload reads rather than claims
    again (a repeat claim would keep the batch anyway: a reviewer who holds items is
    topped up, never given a second batch)."""
    filters = _filters(request.form)
    flt = queue_reads.QueueFilter.parse(filters)
    svc = current_services()
    claimed = claims.take_batch(svc, holder(), where=flt.claim_conditions())
    if not claimed.ids:
        what = "nothing that matches these filters" if flt.active else "nothing you may take"
        note = claims.withheld_note(svc, holder())
        flash(f"Nothing to review right now: the queue has {what}{note}.", "info")
        return redirect(url_for("review.queue", **filters))
    if request.form.get("answer") != START_ANSWER:
        return redirect(url_for("review.batch", **filters), 303)
    return _batch_page(svc, filters, claimed)


@bp.post("/batch/release")
@roles_required(*DECIDERS)
def release_batch():
    count = claims.release_batch(current_services(), holder())
    flash(f"Gave {count} item{'s' if count != 1 else ''} back to the queue.", "info")
    return redirect(url_for("review.queue"))


@bp.get("/batch")
@roles_required(*DECIDERS)
def batch():
    return _batch_page(current_services(), _filters(request.args))


def _batch_page(svc, filters: dict[str, str], claimed: claims.Batch | None = None):
    """The batch page: `claimed`, the batch a claim has just returned (read afresh if None).

    One read for the page: the held ids (unless claimed), the cards and their decisions
    held for undo, which also say whether one's window has closed meanwhile. Only then
    are those taken into effect and the page read again (it was a read of its own before
    every page, for what is almost never there)."""
    # Before the reads: no change falls between.
    version = live.version_after_arrivals(svc.arrivals, svc.redis.client())
    now = utcnow()
    if claimed is not None and not svc.db.is_sqlite:
        items, context, due = _claimed_cards(svc, claimed, now)
    else:
        with svc.db.read() as db:
            items, context, due = _batch_cards(svc, db, claimed, now)
    if due and take_effect_if_due(svc, due, now):  # decisions whose undo window closed
        with svc.db.read() as db:
            items, context, _ = _batch_cards(svc, db, None, utcnow())
    return render_template(
        "review/batch.html",
        items=items,
        filters=filters,
        lease_seconds=svc.settings.lease_seconds,
        poll=batch_poll_url(version),
        address=url_for("review.batch", **filters),
        **context,
    )


def _batch_cards(svc, db, claimed: claims.Batch | None, now):
    """The batch's cards and their context, and the ids whose undo window has closed.

    Decisions held for undo are only on items the reviewer held before: one that was
    pending until this claim has none (a held decision keeps its deferral in_review, on
    the decider's claim, until it takes effect or is undone: review/reviewing/undo.py),
    so a batch claimed afresh reads no pending_decisions."""
    if claimed is None:
        ids = claims.held_ids(db, holder(), now)
        held = undo.held_decisions(db, ids)
    else:
        ids = claimed.ids
        held = undo.held_decisions(db, claimed.kept) if claimed.kept else {}
    items = queue_reads.batch_items(db, ids)
    context = card_context(svc, db, items, lazy_panels=True, held=held)
    return items, context, [i for i, h in held.items() if h.effective_at <= now]


def _claimed_cards(svc, claimed: claims.Batch, now):
    """PostgreSQL, a batch just claimed: `_batch_cards`' reads, each a statement of its
    own without BEGIN, COMMIT and the pool's ping (`read_unpinged`): 2 round trips for a
    fresh batch instead of 5. Their separate snapshots lose nothing: the decisions held
    for undo are read before the cards (one taking effect between the two shows on its
    card as decided, never as live again), and the earlier decisions (card_context) are
    other deferrals' history (with a quorum's approvals, a statement of their own)."""
    read = svc.db.read_unpinged
    held = read(lambda db: undo.held_decisions(db, claimed.kept)) if claimed.kept else {}
    items = read(lambda db: queue_reads.batch_items(db, claimed.ids))
    context = read(lambda db: card_context(svc, db, items, lazy_panels=True, held=held))
    return items, context, [i for i, h in held.items() if h.effective_at <= now]


@bp.post("/batch/selected/<verdict>")
@roles_required(*DECIDERS)
def decide_selected(verdict: str):
    if verdict not in ("approve", "reject"):
        abort(404)
    back = url_for("review.batch", **_filters(request.args))
    ids = request.form.getlist("ids")
    if not ids:
        flash("Select items first (the Select box on each card).", "error")
        return redirect(back)
    seen = {i: parse_ms(request.form.get(f"seen_ms.{i}")) for i in ids}
    result = decide_many(
        current_services(), holder(), ids, verdict, request.form.get("reason"), seen
    )
    if result.done:
        word = "Approved" if verdict == "approve" else "Rejected"
        flash(f"{word} {len(result.done)} item{'s' if len(result.done) != 1 else ''}.", "ok")
    for canary in (d for d in result.done if d.canary):  # each one told (review/canaries/)
        flash(canary.message, "canary" if canary.canary == "missed" else "ok")
    if result.unread:
        min_read = current_services().settings.min_read_seconds
        names = "; ".join(f"“{s.summary}” ({s.why})" for s in result.unread)
        flash(
            f"Not approved, not read yet (in view under {min_read} s): {names}. "
            "Read each one, then approve it.",
            "error",
        )
    for skipped in result.skipped:
        flash(f"Skipped “{skipped.summary}”: {skipped.why}", "error")
    return redirect(back)


@bp.post("/batch/<deferral_id>/<verdict>")
@roles_required(*DECIDERS)
def decide_item(deferral_id: str, verdict: str):
    if verdict not in ("approve", "reject"):
        abort(404)
    svc = current_services()
    # A quick-reason button submits its own "reason" after the typed one: the last wins.
    given = [r for r in request.form.getlist("reason") if r.strip()]
    reason = given[-1] if given else ""
    seen_ms = parse_ms(request.form.get("seen_ms"))
    try:
        outcome = decide(svc, holder(), deferral_id, verdict, reason, seen_ms=seen_ms)
        message, kind = outcome.message, "warn" if outcome.fast else "ok"
    except DecisionRefused as refused:
        return _answer(deferral_id, str(refused), "error")
    if outcome.canary:  # told at once (review/canaries/); a miss as an alert
        headline = MISSED_MESSAGE if outcome.canary == "missed" else CAUGHT_MESSAGE
        kind = "canary" if outcome.canary == "missed" else kind
        return _answer(deferral_id, message, kind, headline=headline)
    if outcome.deferral is not None and outcome.left is not None and _in_batch_htmx():
        if outcome.effective_at is not None:
            return _held_card(outcome, kind)
        return _ended_card(outcome, kind)
    return _answer(deferral_id, message, kind)


def _in_batch_htmx() -> bool:
    return is_htmx() and request.form.get("on") != "item"


def _ended_card(outcome: Decided, kind: str):
    """The answer to a decision that ended the item, in a batch (htmx): the card as the
    decision left it, without its diff and evidence (the reviewer has moved on), and the
    batch's count, which the decision counted: no read after the commit."""
    return render_template(
        "review/_decided_card.html",
        d=outcome.deferral,
        notice=outcome.message,
        notice_kind=kind,
        left=outcome.left,
    )


def _held_card(outcome: Decided, kind: str):
    """The answer to a decision held for its undo window, in a batch (htmx): the card as
    a held one shows there (head, facts, Undo with its countdown), from the deferral its
    checks read and the count its lease renewal made: no read after the commit."""
    ms_left = (outcome.effective_at - utcnow()).total_seconds() * 1000
    return render_template(
        "review/_held_card.html",
        d=outcome.deferral,
        waiting=HeldCard(outcome.status, max(int(ms_left), 0)),
        notice=outcome.message,
        notice_kind=kind,
        left=outcome.left,
    )


@bp.post("/batch/<deferral_id>/undo")
@roles_required(*DECIDERS)
def undo_item(deferral_id: str):
    """Undo (key u): take back a decision in its window; the card comes back with its
    controls (PROTOCOL.md section 16)."""
    try:
        message, kind = undo.undo(current_services(), holder(), deferral_id).message, "ok"
    except undo.UndoRefused as refused:
        message, kind = refused.message, "error"
    return _answer(deferral_id, message, kind, undone=kind == "ok")


@bp.get("/batch/<deferral_id>/card")
@roles_required(*DECIDERS)
def card(deferral_id: str):
    """One card as it is now, with the page's status line: what a card asks for when
    its undo window has closed (the decision takes effect here if nothing took it yet)."""
    svc = current_services()
    take_effect_if_due(svc, [deferral_id])
    with svc.db.read() as db:
        item = db.get(Deferral, deferral_id)
        if item is None:
            abort(404)
        as_it_is = _as_it_is(item)  # reads its approvals: inside the session
    return _answer(deferral_id, as_it_is, "ok", on_item_page=request.args.get("on") == "item")


def _as_it_is(d: Deferral) -> str:
    if d.status == "pending":
        given = d.approvers
        if not given:
            return "Back in the queue."
        return (
            f"{len(given)} of {d.required_approvals} approvals: back in the queue for "
            "another reviewer."
        )
    if d.status == "in_review":
        return "Not decided yet."
    how = ended_how(d)
    return how[:1].upper() + how[1:] + "."


def _answer(
    deferral_id: str,
    message: str,
    kind: str,
    undone: bool = False,
    on_item_page: bool | None = None,
    headline: str | None = None,  # the page's status line, when shorter than the card's
):
    """After a decision or an undo: the card as it is now (htmx), or back to the page."""
    svc = current_services()
    if on_item_page is None:
        on_item_page = request.form.get("on") == "item"
    if not is_htmx():
        flash(message, kind)
        if on_item_page:
            return redirect(url_for("review.deferral", deferral_id=deferral_id))
        return redirect(url_for("review.batch"))
    with svc.db.read() as db:
        item = db.get(Deferral, deferral_id)
        if item is None:
            abort(404)
        ids = claims.held_ids(db, holder(), utcnow())
        context = card_context(svc, db, [item])
        left = len(set(ids) - set(undo.held_decisions(db, ids)))
    return render_template(
        "review/_decided.html",
        d=item,
        notice=message,
        notice_kind=kind,
        left=left,
        in_batch=not on_item_page,
        on_item_page=on_item_page,
        undone=undone,
        headline=headline,
        **context,
    )
