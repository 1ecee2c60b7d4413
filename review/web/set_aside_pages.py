"""Snooze and hand over a held card (review/reviewing/set_aside.py): thin views whose
routes join reviewer_pages.bp; the answer is the card as it is now, as after a decision."""

from __future__ import annotations

from datetime import timedelta

from flask import abort, redirect, render_template, request, url_for

from review.models import Deferral, utcnow
from review.reviewing import set_aside
from review.reviewing.decisions import DecisionRefused
from review.services import current_services
from review.web.auth import DECIDERS, roles_required
from review.web.batch_pages import _answer
from review.web.reviewer_pages import SNOOZE_CHOICES, bp, holder, is_htmx


@bp.get("/batch/<deferral_id>/set-aside")
@roles_required(*DECIDERS)
def set_aside_panel(deferral_id: str):
    """The snooze and hand-over forms of a card on a batch page, fetched (htmx) when the
    reviewer opens the panel: a batch page neither renders them for every card nor reads
    whom an item could be handed to. Without htmx, the item page, which has them."""
    if not is_htmx():
        return redirect(url_for("review.deferral", deferral_id=deferral_id))
    with current_services().db.read() as session:
        d = session.get(Deferral, deferral_id)
        if d is None:
            abort(404)
        if not (d.status == "in_review" and d.claimed_by == holder().id):
            return render_template("review/_lazy_gone.html")
        choices = set_aside.hand_over_choices(session, holder())
        return render_template(
            "review/_set_aside_panel.html",
            d=d,
            hand_over_to=choices,
            snooze_choices=SNOOZE_CHOICES,
            on_item_page=False,
        )


@bp.post("/batch/<deferral_id>/snooze")
@roles_required(*DECIDERS)
def snooze_item(deferral_id: str):
    svc = current_services()
    try:
        minutes = int(request.form.get("minutes", ""))
        if minutes not in dict(SNOOZE_CHOICES):
            raise ValueError(minutes)
    except ValueError:
        return _answer(deferral_id, "Pick how long to snooze it.", "error")
    until = utcnow() + timedelta(minutes=minutes)
    try:
        done = set_aside.snooze(svc, holder(), deferral_id, until, request.form.get("reason"))
        message, kind = done.message, "ok"
    except DecisionRefused as refused:
        message, kind = str(refused), "error"
    return _answer(deferral_id, message, kind)


@bp.post("/batch/<deferral_id>/hand-over")
@roles_required(*DECIDERS)
def hand_over_item(deferral_id: str):
    """`to` is "user:NAME" or "group:NAME" (the card's one select)."""
    svc = current_services()
    kind_, _, name = request.form.get("to", "").partition(":")
    if kind_ not in ("user", "group") or not name:
        return _answer(deferral_id, "Pick a reviewer or a group to hand it to.", "error")
    try:
        done = set_aside.hand_over(
            svc,
            holder(),
            deferral_id,
            to_user=name if kind_ == "user" else None,
            to_group=name if kind_ == "group" else None,
            note=request.form.get("note"),
        )
        message, kind = done.message, "ok"
    except DecisionRefused as refused:
        message, kind = str(refused), "error"
    return _answer(deferral_id, message, kind)
