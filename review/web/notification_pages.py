"""The notifications page (admins): every channel's deliveries with status, attempts,
last error and provider reference; dead letters, and a Retry button for each."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user

from review.notifications import overview
from review.notifications.delivery import NotDead, retry_dead
from review.notifications.registry import channels
from review.services import current_services
from review.web.auth import roles_required

bp = Blueprint("notifications", __name__, url_prefix="/admin/notifications")


@bp.get("")
@roles_required("admin")
def index():
    shown = request.args.get("status", "all")
    if shown not in overview.FILTERS:
        shown = "all"
    svc = current_services()
    with svc.db.read() as session:
        rows = overview.recent(session, status=overview.FILTERS[shown])
        counts = overview.counts(session)
    states = [(c.name, c.configured(svc.settings)) for c in channels()]
    return render_template(
        "notifications/index.html",
        rows=rows,
        counts=counts,
        states=states,
        shown=shown,
        filters=overview.FILTERS,
    )


@bp.post("/<notification_id>/retry")
@roles_required("admin")
def retry(notification_id: str):
    try:
        retry_dead(current_services(), notification_id, current_user.username)
        flash(f"Retrying {notification_id}: a new round of attempts, starting now.", "ok")
    except NotDead:
        flash(f"Nothing changed: {notification_id} is not a dead letter (any more).", "error")
    return redirect(url_for("notifications.index", status=request.args.get("status", "all")))
