"""/audit: the log for auditors and admins, filtered, paged by sequence number, exported;
and each deferral's evidence as one readable chain."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, abort, render_template, request, stream_with_context
from sqlalchemy import select

from review.audit import checkpoints
from review.audit import export as audit_export
from review.audit.event_types import EVENT_TYPES
from review.audit.hashing import stored_event_hash
from review.audit.verify import log_head
from review.models import AuditEvent, Deferral
from review.services import current_services
from review.web.auth import roles_required

bp = Blueprint("audit", __name__, url_prefix="/audit")
READERS = ("admin", "auditor")
PAGE = 50

# The evidence reads as the chain of who authorized what (PROTOCOL.md section 17): the
# human's intent, the agent's decision, the policy's evaluation, the people's approval,
# the execution and the response the action got. `deferral.received` holds both the
# intent and the decision; `execution.reported` both the execution and its response:
# each stage shows its own part of them.
STAGES = (
    ("Intent", ("deferral.received",)),
    ("Decision", ("deferral.received",)),
    ("Evaluation", ("deferral.evaluated",)),
    (
        "Approval",
        (
            "deferral.claimed",
            "deferral.released",
            "deferral.lease_lapsed",
            "deferral.approval_1_of_2",
            "deferral.approval_recorded",
            "deferral.snoozed",
            "deferral.handed_over",
            "deferral.approved",
            "deferral.rejected",
            "deferral.expired",
            "deferral.cancelled",
            "deferral.killed",
            "callback.attempted",
            "callback.redelivery_requested",
        ),
    ),
    ("Execution", ("execution.reported", "execution.violation")),
    ("Response", ("execution.reported",)),
)


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _type_options(chosen: str) -> list[str]:
    """The event-type filter's options: the known types, and the one asked for if unknown
    (so a link naming it still shows what it filters by)."""
    if chosen and chosen not in EVENT_TYPES:
        return sorted((*EVENT_TYPES, chosen))
    return list(EVENT_TYPES)


@bp.get("")
@roles_required(*READERS)
def index():
    args = request.args
    filters = {k: args.get(k, "").strip() for k in ("agent", "deferral", "actor", "type")}
    since, until = _time(args.get("since")), _time(args.get("until"))
    before = args.get("before", "")
    query = select(AuditEvent)
    if filters["agent"]:
        query = query.where(AuditEvent.agent == filters["agent"])
    if filters["deferral"]:
        query = query.where(AuditEvent.deferral_id == filters["deferral"])
    if filters["actor"]:
        query = query.where(AuditEvent.actor_id == filters["actor"].split(":")[-1])
    if filters["type"]:
        query = query.where(AuditEvent.event_type == filters["type"])
    if since:
        query = query.where(AuditEvent.at >= since)
    if until:
        query = query.where(AuditEvent.at < until)
    if before.isdigit():
        query = query.where(AuditEvent.seq < int(before))
    svc = current_services()
    key = checkpoints.cached_key(svc.settings.audit_key_file)  # read once per process
    with svc.db.read() as db:
        rows = db.scalars(query.order_by(AuditEvent.seq.desc()).limit(PAGE + 1)).all()
        head = log_head(db)
        last = checkpoints.latest(db)
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    page_args = {k: v for k, v in args.items() if k != "before" and v}
    return render_template(
        "audit/index.html",
        rows=[(e, json.loads(e.payload)) for e in rows],
        filters=filters,
        since=args.get("since", ""),
        until=args.get("until", ""),
        next_before=rows[-1].seq if more and rows else None,
        page_args=page_args,
        head=head,
        last=last,
        key=key,
        types=_type_options(filters["type"]),
    )


@bp.get("/export.<fmt>")
@roles_required(*READERS)
def export(fmt: str):
    if fmt not in ("jsonl", "csv"):
        abort(404)
    svc = current_services()
    key = checkpoints.cached_key(svc.settings.audit_key_file)  # read once per process
    lines = audit_export.jsonl if fmt == "jsonl" else audit_export.csv_lines

    def generate():
        with svc.db.read() as db:
            yield from lines(db, key)

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Response(
        stream_with_context(generate()),
        mimetype="application/x-ndjson" if fmt == "jsonl" else "text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="countersign-audit-{stamp}.{fmt}"',
            "Cache-Control": "no-store",
        },
    )


@bp.get("/deferrals/<deferral_id>")
@roles_required(*READERS)
def evidence(deferral_id: str):
    """One deferral's whole chain, stage by stage, each event's hash checked."""
    svc = current_services()
    with svc.db.read() as db:
        deferral = db.get(Deferral, deferral_id)
        events = db.scalars(
            select(AuditEvent).where(AuditEvent.deferral_id == deferral_id).order_by(AuditEvent.seq)
        ).all()
        if deferral is None and not events:
            abort(404)
        head = log_head(db)  # the heads count the events: no need to count the log
    staged: list[tuple[str, list[dict[str, Any]]]] = []
    placed = set()
    for stage, kinds in STAGES:
        items = [_link(e) for e in events if e.event_type in kinds]
        placed.update(i["seq"] for i in items)
        staged.append((stage, items))
    other = [_link(e) for e in events if e.seq not in placed]
    if other:
        staged.append(("Other", other))
    return render_template(
        "audit/evidence.html",
        d=deferral,
        deferral_id=deferral_id,
        staged=staged,
        intact=all(i["intact"] for _s, items in staged for i in items),
        total=head.events,
    )


def _link(e: AuditEvent) -> dict[str, Any]:
    return {
        "seq": e.seq,
        "shard": e.shard,
        "place": e.seq if e.shard_seq is None else e.shard_seq,
        "at": e.at,
        "actor": f"{e.actor_kind}:{e.actor_id}",
        "event_type": e.event_type,
        "payload": json.loads(e.payload),
        "hash": e.hash,
        "intact": stored_event_hash(e) == e.hash,
    }
