"""Edit, then approve, on the card and the item page: the editor's preview and its approval.

Thin views over review/reviewing/edits.py. The arguments come from one of two forms: a
JSON editor (a textarea read as strictly as the API reads a request body:
review/api/jsonbody.py, within the API's size and depth limits), or, for flat arguments
(text, numbers, true/false), one input per field, each read back as the type it had.
A preview answers the new diff, score and verdict; approving answers the card (htmx) or
goes back to the page it came from. Bad input answers the editor again with what the
reviewer typed and the error: nothing they typed is lost.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from review.api.jsonbody import parse_json
from review.errors import DomainError
from review.models import Deferral, utcnow
from review.reviewing import undo
from review.reviewing.claims import held_ids
from review.reviewing.decisions import DecisionRefused
from review.reviewing.edits import ARGS_DEPTH_OFFSET, edit_and_approve, preview_edit
from review.reviewing.patches import patch_changes
from review.reviewing.reading import parse_ms
from review.services import current_services
from review.web.auth import DECIDERS, roles_required
from review.web.filters import has_hidden, json_with_hidden_escaped
from review.web.reviewer_pages import card_context, holder, is_htmx

bp = Blueprint("edit", __name__)

NUMBER = re.compile(r"^\s*-?\d+(\.\d+)?([eE][-+]?\d+)?\s*$")
INTEGER = re.compile(r"^\s*-?\d+\s*$")
LONG_TEXT = 80  # characters from which a text field gets a textarea


class BadArguments(Exception):
    """What the reviewer typed cannot be arguments; the message says why and where."""


def flat_fields(args: Any) -> list[dict[str, Any]] | None:
    """One input per argument when every argument is text, a number or true/false, and
    none hides a character (an input shows its value as is: a right-to-left override
    would reverse what the reviewer reads; the JSON editor writes those escaped)."""
    if not isinstance(args, dict) or not args:
        return None
    if any(has_hidden(k) or (isinstance(v, str) and has_hidden(v)) for k, v in args.items()):
        return None
    fields = []
    for n, (key, value) in enumerate(args.items()):
        if isinstance(value, bool):
            kind = "boolean"
        elif isinstance(value, int | float):
            kind = "number"
        elif isinstance(value, str):
            kind = "long_text" if "\n" in value or len(value) > LONG_TEXT else "text"
        else:
            return None
        fields.append({"n": n, "key": key, "kind": kind, "value": value})
    return fields


def read_json(text: str) -> Any:
    settings = current_services().settings
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) > settings.max_body_bytes:
        raise BadArguments(f"The arguments are over {settings.max_body_bytes} bytes.")
    try:
        return parse_json(raw, settings.max_json_depth - ARGS_DEPTH_OFFSET)
    except DomainError as exc:
        where = "; ".join(f"at {d['path'] or '/'}: {d['message']}" for d in exc.details[:3])
        said = exc.message.replace("body is", "the arguments are")
        said = said.replace("JSON nests", "they nest").replace(
            "request does not match the schema", "not accepted"
        )
        said = said[0].upper() + said[1:] + (f" ({where})" if where else "")
        raise BadArguments(said + ".") from None


def read_fields(current: dict[str, Any], form) -> dict[str, Any]:
    """The per-field form's values, each read as the type the argument has now."""
    fields = flat_fields(current)
    if fields is None:
        raise BadArguments("These arguments are not flat: edit them as JSON.")
    args: dict[str, Any] = {}
    for field in fields:
        text = form.get(f"arg:{field['key']}")
        if text is None:
            raise BadArguments(f"The field {field['key']} is missing from the form.")
        if field["kind"] == "boolean":
            if text not in ("true", "false"):
                raise BadArguments(f"{field['key']} must be true or false.")
            args[field["key"]] = text == "true"
        elif field["kind"] == "number":
            if not NUMBER.match(text):
                raise BadArguments(f"{field['key']} must be a number, not {text[:40]!r}.")
            args[field["key"]] = int(text) if INTEGER.match(text) else float(text)
        else:
            args[field["key"]] = text.replace("\r\n", "\n")
    return read_json(json.dumps(args, ensure_ascii=False))  # the same strict checks


def edited_args(deferral: Deferral) -> Any:
    if request.form.get("source") == "fields":
        return read_fields(deferral.action.get("args") or {}, request.form)
    return read_json(request.form.get("args_json", ""))


def typed() -> dict[str, Any]:
    """What the reviewer typed, to show again with an error."""
    return {
        "edit_text": _escaped_or_none(request.form.get("args_json")),
        "edit_values": {k[4:]: v for k, v in request.form.items() if k.startswith("arg:")},
    }


def _deferral(session, deferral_id: str) -> Deferral:
    item = session.get(Deferral, deferral_id)
    if item is None:
        abort(404)
    return item


@bp.post("/deferrals/<deferral_id>/edit/preview")
@roles_required(*DECIDERS)
def preview(deferral_id: str):
    """The edited action's diff against the agent's, its score and the policy's verdict."""
    svc = current_services()
    with svc.db.read() as session:
        d = _deferral(session, deferral_id)
        try:
            shown = preview_edit(svc, d, edited_args(d))
            error = None
        except (BadArguments, DecisionRefused) as exc:
            shown, error = None, str(exc)
        return render_template("review/_edit_preview.html", d=d, preview=shown, error=error)


@bp.post("/deferrals/<deferral_id>/edit/approve")
@roles_required(*DECIDERS)
def approve(deferral_id: str):
    svc = current_services()
    back = request.form.get("next") or url_for("review.batch")
    if not back.startswith("/") or back.startswith("//"):
        back = url_for("review.batch")
    try:
        with svc.db.read() as session:
            args = edited_args(_deferral(session, deferral_id))
        outcome = edit_and_approve(
            svc,
            holder(),
            deferral_id,
            args,
            request.form.get("reason"),
            seen_ms=parse_ms(request.form.get("seen_ms")),  # sent by static/review.js
        )
    except (BadArguments, DecisionRefused) as exc:
        return _refused(deferral_id, str(exc), back)
    if not is_htmx():
        flash(outcome.message, "ok")
        return redirect(back)
    on_item_page = back.startswith("/deferrals/")
    with svc.db.read() as session:
        d = _deferral(session, deferral_id)
        return render_template(
            "review/_decided.html",  # the card, and the batch's count and status line
            d=d,
            notice=outcome.message,
            notice_kind="warn" if outcome.fast else "ok",
            left=_left(session),
            in_batch=not on_item_page,
            on_item_page=on_item_page,
            **card_context(svc, session, [d]),
        )


@bp.get("/deferrals/<deferral_id>/edit")
@roles_required(*DECIDERS)
def editor_form(deferral_id: str):
    """The editor of a card on a batch page, fetched (htmx) when the reviewer opens Edit
    arguments: a batch page does not render five editors that are seldom opened. Without
    htmx, the item page, which has the editor."""
    if not is_htmx():
        return redirect(url_for("review.deferral", deferral_id=deferral_id))
    with current_services().db.read() as session:
        d = _deferral(session, deferral_id)
        if not _holds(d):
            return render_template("review/_lazy_gone.html")
        return render_template("review/_edit_form.html", d=d, in_batch=True)


def _left(session) -> int:
    """Items the reviewer holds still to decide (not those in their undo window)."""
    ids = held_ids(session, holder(), utcnow())
    return len(set(ids) - set(undo.held_decisions(session, ids)))


def _refused(deferral_id: str, message: str, back: str):
    """The editor again, open, with what was typed and why it was refused."""
    if not is_htmx():
        flash(message, "error")
        return redirect(back)
    svc = current_services()
    with svc.db.read() as session:
        html = render_template(
            "review/_edit_action.html",
            d=_deferral(session, deferral_id),
            edit_open=True,
            edit_error=message,
            edit_next=back,
            **typed(),
        )
    return html, 200, {"HX-Retarget": f"#edit-{deferral_id}", "HX-Reswap": "outerHTML"}


def init_app(app) -> None:
    app.register_blueprint(bp)
    app.jinja_env.globals["edit_fields"] = flat_fields
    app.jinja_env.globals["current_user_holds"] = _holds
    app.jinja_env.globals["edit_changes"] = _edit_changes
    app.jinja_env.globals["edit_json"] = _as_text


def _escaped_or_none(text: str | None) -> str | None:
    return None if text is None else json_with_hidden_escaped(text)


def _as_text(args: Any) -> str:
    """Arguments as the JSON editor starts with them (autoescaped by the template), hidden
    characters written as \\u escapes."""
    return json_with_hidden_escaped(json.dumps(args, indent=2, ensure_ascii=False))


def _edit_changes(d: Deferral) -> list[dict[str, Any]]:
    """An edit made before, as diff rows against the agent's own action."""
    if not d.original_action_digest:
        return []
    return patch_changes(d.original_action, d.action_patch or [])


def _holds(d: Deferral) -> bool:
    """Whether the logged-in reviewer holds `d` now (the editor is theirs to use)."""
    return bool(
        current_user.is_authenticated
        and current_user.can_decide
        and d.status == "in_review"
        and d.claimed_by == current_user.id
    )
