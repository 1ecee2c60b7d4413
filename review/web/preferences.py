"""A person's own settings: single-key shortcuts on the reviewer pages, on or off
(PROTOCOL.md section 16: a setting labelled Keyboard shortcuts; WCAG 2.1.4)."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

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
    return render_template("settings.html")
