"""A person's own settings: single-key shortcuts on the reviewer pages, on or off
(PROTOCOL.md section 16: a setting labelled Keyboard shortcuts; WCAG 2.1.4), and how
notifications reach them (PROTOCOL.md section 14: channels, a daily digest, quiet hours)."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from review.notifications.preferences import BadPreferences, preferences_of, save_preferences
from review.notifications.registry import channels
from review.services import current_services
from review.users import set_keyboard_shortcuts

bp = Blueprint("prefs", __name__)


@bp.route("/settings", methods=["GET", "POST"])
@login_required
def settings():
    if request.method == "POST":
        on = request.form.get("keyboard_shortcuts") == "on"
        with current_services().db.write() as session:
            set_keyboard_shortcuts(session, current_user.id, on)
        flash(f"Keyboard shortcuts are {'on' if on else 'off'}.", "ok")
        return redirect(url_for("prefs.settings"))
    return _page()


def _page(status: int = 200, form: dict | None = None):
    svc = current_services()
    with svc.db.read() as session:
        prefs = preferences_of(session, current_user.id)
    personal = [
        {"name": c.name, "configured": c.configured(svc.settings)} for c in channels() if c.personal
    ]
    return render_template("settings.html", prefs=prefs, personal=personal, form=form or {}), status


@bp.post("/settings/notifications")
@login_required
def notifications():
    form = request.form
    try:
        with current_services().db.write() as session:
            save_preferences(
                session,
                current_user.id,
                channels=form.getlist("channel"),
                digest=form.get("digest") == "on",
                quiet_from=form.get("quiet_from"),
                quiet_until=form.get("quiet_until"),
                timezone=form.get("timezone", "UTC"),
            )
    except BadPreferences as exc:
        flash(exc.message, "error")
        return _page(400, form)
    flash("Notification settings saved.", "ok")
    return redirect(url_for("prefs.settings"))
