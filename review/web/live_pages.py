"""The polls that keep a batch and the queue live (review/reviewing/live.py).

A page renders with the number of the latest change; a hidden element polls every
1.5 s with it. While nothing changed the answer is 204 after one Redis GET: the
session cookie (signed) says someone is logged in, and nothing is read from the
database, not even the user. When the number moved, the user is checked as on any
page and only what changed is rendered: a batch gets the cards that changed (as
out-of-band swaps) and its count; the queue gets its body again. A held connection
(server-sent events) would hold a thread of the web server per open page; a poll holds
nothing between requests.
"""

from __future__ import annotations

import time

from flask import Blueprint, abort, current_app, render_template, request, session
from flask_login import current_user

from review.models import Deferral, utcnow
from review.reviewing import approvals, claims, live, queue_reads, undo
from review.reviewing.decisions import ended_how
from review.services import current_services
from review.web.reviewer_pages import batch_poll_url, card_context, holder, queue_poll_url

bp = Blueprint("live", __name__)
MAX_IDS = 60  # a batch is at most 50 items
# New deferrals bump the counter (intake's `live.Arrivals`); the queue is still
# re-read this often for what no write announces (times left, snoozes waking up).
QUEUE_REFRESH_SECONDS = 10


@bp.after_request
def never_from_the_cache(response):
    response.headers["Cache-Control"] = "no-store"
    return response


def _number(raw: str | None) -> int:
    return int(raw) if raw and raw.isdigit() else -1


def _signed_in() -> bool:
    """Someone logged in sent this (the signed session cookie says so); who and whether
    still allowed is checked against the database only when there is news to show."""
    return bool(session.get("_user_id"))


@bp.get("/live/batch")
def batch():
    if not _signed_in():
        abort(401)
    since = _number(request.args.get("v"))
    # The cards still to decide on the page, and those taken away that have not ended
    # (static/review.js sends them): a card decided or held on the page is the reviewer's
    # own doing and needs no news.
    ids = [i for i in request.args.get("ids", "").split(",") if i][:MAX_IDS]
    svc = current_services()
    client = svc.redis.client()
    now = live.version_after_arrivals(svc.arrivals, client)
    if now == since and now >= 0:
        return "", 204
    changed = live.changed_since(client, since, ids) if since >= 0 and now >= 0 else ids
    if not changed:  # news, but none of this page's items: a new number, still no database
        return _poll_only(batch_poll_url(now))
    if not current_user.is_authenticated or not current_user.can_decide:
        abort(401)
    return _changed_cards(now, ids, changed or ids)


def _poll_only(poll: str) -> str:
    """The poll again with a new number. Rendered without the app's context processors:
    Flask-Login's would load the user from the database, and a batch hears of every
    new deferral in the queue this way."""
    return current_app.jinja_env.get_template("review/_live_poll.html").render(poll=poll)


def _changed_cards(version: int, ids: list[str], changed: list[str]):
    """The cards that changed and are no longer this reviewer's to decide (a card still
    live keeps what the reviewer is typing), the count of items left, the status line."""
    svc = current_services()
    me = holder()
    with svc.db.read() as db:
        items = [d for d in (db.get(Deferral, i) for i in changed) if d is not None]
        gone = [d for d in items if not (d.status == "in_review" and d.claimed_by == me.id)]
        context = card_context(svc, db, gone)
        held = claims.held_ids(db, me, utcnow())
        left = len(set(held) - set(undo.held_decisions(db, held)))
    given = context["approvals"]
    return render_template(
        "review/_live_batch.html",
        poll=batch_poll_url(version),
        cards=[(d, _what_happened(d, given.get(d.id, []))) for d in gone],
        left=left,
        **context,
    )


def _what_happened(d: Deferral, approvers: list[str]) -> str:
    if d.status == "in_review":
        return "Another reviewer holds it now: your claim lapsed."
    if d.status == "pending" and approvers:
        count = approvals.count_phrase(len(approvers), d.required_approvals)
        return f"{count} (by {', '.join(approvers)}): back in the queue."
    if d.status == "pending":
        return "Your claim lapsed: it went back to the queue."
    how = ended_how(d)
    return how[:1].upper() + how[1:] + "."


@bp.get("/live/queue")
def queue():
    if not _signed_in():
        abort(401)
    since = _number(request.args.get("v"))
    rendered_at = _number(request.args.get("t"))
    svc = current_services()
    client = svc.redis.client()
    version = live.version_after_arrivals(svc.arrivals, client)
    fresh = 0 <= time.time() - rendered_at < QUEUE_REFRESH_SECONDS
    if version == since and version >= 0 and fresh:
        return "", 204
    if not current_user.is_authenticated:
        abort(401)
    flt = queue_reads.QueueFilter.parse(request.args)
    with svc.db.read() as db:
        page = queue_reads.queue_page(
            db, client, flt, holder() if current_user.can_decide else None, partial=True
        )
    return render_template(
        "review/_queue_body.html",
        page=page,
        flt=flt,
        cap=queue_reads.COUNT_CAP,
        poll=queue_poll_url(version, flt),
        now=utcnow(),  # what is still snoozed
    )
