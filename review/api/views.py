"""The /api/v1 views: read the raw request, authenticate, call the domain, answer JSON."""

from __future__ import annotations

import json
import logging
from typing import Any

import redis
from flask import Blueprint, Response, jsonify, request
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException

from review import breakers, intake, quotas, redis_keys
from review.agents import Signer, signers
from review.api import schema
from review.api.errors import ApiError, not_found, unauthorized
from review.api.jsonbody import parse_json
from review.decisions import cancel_deferral
from review.executions import report_execution
from review.models import TERMINAL_STATUSES, Agent, Deferral
from review.notify import wait_until_ended
from review.resources import agent_status, deferral_resource
from review.runtime import Runtime, current_runtime
from review.signing import SignatureError, parse_headers

log = logging.getLogger(__name__)
bp = Blueprint("api", __name__, url_prefix="/api/v1")


@bp.errorhandler(ApiError)
def on_api_error(error: ApiError) -> Response:
    response = jsonify(error.body())
    response.status_code = error.status
    response.headers.update(error.headers)
    return response


@bp.errorhandler(HTTPException)
def on_http_error(error: HTTPException) -> Response:
    code = {404: "not_found", 405: "method_not_allowed"}.get(error.code or 0, "bad_request")
    return on_api_error(ApiError(error.code or 400, code, error.description or code))


@bp.errorhandler(Exception)
def on_unexpected(error: Exception) -> Response:
    log.exception("unexpected error in %s %s", request.method, request.path)
    return on_api_error(ApiError(500, "internal_error", "the server failed; nothing was changed"))


def raw_body(rt: Runtime) -> bytes:
    """The body, refused with 413 before reading when it is over the limit."""
    limit = rt.settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "payload_too_large", f"body is over {limit} bytes")
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, "payload_too_large", f"body is over {limit} bytes")
    return data


def require_json(rt: Runtime, body: bytes) -> Any:
    if request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "send Content-Type: application/json")
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise ApiError(415, "unsupported_media_type", "send JSON as UTF-8")
    return parse_json(body, rt.settings.max_json_depth)


def authenticate_agent(rt: Runtime, session: Session, slug: str, body: bytes) -> Signer:
    """The agent named in the path, if it signed this request; 401 otherwise."""
    try:
        signed = parse_headers(request.headers)
    except SignatureError:
        raise unauthorized() from None
    for fresh in (False, True):
        signer = rt.secrets.signer(session, slug, fresh=fresh)
        if signer is None:
            break
        if signed.signed_by_any(rt.secrets.secrets_for(signer), body):
            return signer
    raise unauthorized()


def authenticate_for_deferral(
    rt: Runtime, session: Session, deferral_id: str, body: bytes
) -> Signer:
    """The deferral's own agent, if it signed this request.

    The path names no agent, so the secret comes from the deferral's agent. A request
    correctly signed by a different agent answers 404, as if the deferral did not
    exist (PROTOCOL.md section 3); one signed by nobody we know answers 401.
    """
    try:
        signed = parse_headers(request.headers)
    except SignatureError:
        raise unauthorized() from None
    owner_id = None
    if len(deferral_id) <= 40:
        owner_id = session.scalar(select(Deferral.agent_id).where(Deferral.id == deferral_id))
    if owner_id is not None:
        owner = signers(session, agent_id=owner_id)
        if owner and signed.signed_by_any(rt.secrets.secrets_for(owner[0]), body):
            return owner[0]
    for other in signers(session):
        if signed.signed_by_any(rt.secrets.secrets_for(other), body):
            raise not_found()
    raise unauthorized()


def refuse(rt: Runtime, agent: Signer, error: ApiError, webhook_id: str | None) -> ApiError:
    """Audit a refusal of an authenticated request, then hand the error back to raise."""
    intake.record_refusal(rt, agent, error, webhook_id=webhook_id, endpoint=request.path)
    return error


@bp.post("/agents/<slug>/deferrals")
def create_deferral(slug: str):
    rt = current_runtime()
    body = raw_body(rt)
    with rt.db.read() as session:
        agent = authenticate_agent(rt, session, slug, body)
    webhook_id = request.headers["webhook-id"]
    flood = breakers.flood_limit(rt, agent.breaker_flood)
    admission = None
    try:
        admission = quotas.admit(
            rt,
            agent.slug,
            webhook_id,
            per_second=rt.settings.agent_rate,
            flood_window=flood[1] if flood else None,
        )
        payload = require_json(rt, body)
        schema.validate("DeferralRequest", payload)
        received = intake.create_deferral(rt, agent, webhook_id, intake.prepare(rt, payload))
    except ApiError as error:
        if admission is not None:
            quotas.withdraw(rt, admission)
        raise refuse(rt, agent, error, webhook_id) from None
    if received.created:
        breakers.after_intake(rt, agent, admission.in_window)
    else:
        quotas.withdraw(rt, admission)
    status = 202 if received.created else 200
    return jsonify(deferral_resource(received.deferral, received.agent_slug)), status


MAX_WAIT_SECONDS = 60


def wait_seconds() -> int:
    """The `wait` query parameter: whole seconds, 0 to 60 (PROTOCOL.md 4.2)."""
    given = request.args.get("wait")
    if given is None:
        return 0
    if not given.isdigit() or int(given) > MAX_WAIT_SECONDS:
        raise ApiError(
            422,
            "invalid_request",
            "wait must be whole seconds from 0 to 60",
            [{"path": "?wait", "message": f"an integer from 0 to {MAX_WAIT_SECONDS}"}],
        )
    return int(given)


@bp.get("/deferrals/<deferral_id>")
def read_deferral(deferral_id: str):
    """One deferral; with `?wait=N`, once it has ended or N seconds have passed.

    While it waits the request holds no database connection: each read is its own
    short transaction, and the process's listener (review/notify.py) wakes it when
    the deferral ends. Waiting requests hold a thread each, so serve with gunicorn's
    gthread worker (README, "Serving").
    """
    rt = current_runtime()
    body = raw_body(rt)
    with rt.db.read() as session:
        authenticate_for_deferral(rt, session, deferral_id, body)
    wait = wait_seconds()

    def read_status() -> tuple[bool, dict]:
        with rt.db.read() as session:
            deferral = session.get(Deferral, deferral_id)
            return deferral.status in TERMINAL_STATUSES, deferral_resource(deferral)

    if wait == 0:
        return jsonify(read_status()[1])
    return jsonify(wait_until_ended(rt.waiters, deferral_id, wait, read_status))


@bp.post("/deferrals/<deferral_id>/cancel")
def cancel(deferral_id: str):
    rt = current_runtime()
    body = raw_body(rt)
    with rt.db.read() as session:
        agent = authenticate_for_deferral(rt, session, deferral_id, body)
    try:
        payload = require_json(rt, body)
        schema.validate("CancelRequest", payload)
        deferral = cancel_deferral(rt, deferral_id, agent, payload["reason"])
    except ApiError as error:
        raise refuse(rt, agent, error, request.headers.get("webhook-id")) from None
    with rt.db.read() as session:
        deferral = session.get(Deferral, deferral.id)
        return jsonify(deferral_resource(deferral))


@bp.post("/deferrals/<deferral_id>/execution")
def execution(deferral_id: str):
    rt = current_runtime()
    body = raw_body(rt)
    with rt.db.read() as session:
        agent = authenticate_for_deferral(rt, session, deferral_id, body)
    webhook_id = request.headers["webhook-id"]
    try:
        payload = require_json(rt, body)
        schema.validate("ExecutionReport", payload)
    except ApiError as error:
        raise refuse(rt, agent, error, webhook_id) from None
    reported = report_execution(rt, deferral_id, agent, payload, webhook_id)
    if reported.refused is not None:  # already audited, as a violation
        r = reported.refused
        raise ApiError(r.status, r.code, r.message)
    with rt.db.read() as session:
        return jsonify(deferral_resource(session.get(Deferral, deferral_id))), 201


@bp.get("/agents/<slug>/status")
def status(slug: str):
    """The kill switch, polled: served from Redis, rewritten there by every flip.

    A flip overwrites the cached copy after it commits; a reader that missed the cache
    only adds its copy if none is there (SET NX), so a reader that read the database
    just before a flip cannot put the old state back.
    """
    rt = current_runtime()
    body = raw_body(rt)
    with rt.db.read() as session:  # no query at all while the signer is cached
        signer = authenticate_agent(rt, session, slug, body)
    key = redis_keys.agent_status(signer.slug)
    client = rt.redis.client()
    try:
        cached = client.get(key)
    except redis.RedisError:
        cached = None
    if cached is not None:
        return Response(cached, mimetype="application/json")
    with rt.db.read() as session:
        text = json.dumps(agent_status(session.get(Agent, signer.id)))
    try:
        client.set(key, text, nx=True, ex=redis_keys.STATUS_TTL_SECONDS)
    except redis.RedisError:
        pass
    return Response(text, mimetype="application/json")


@bp.get("/openapi.json")
def openapi():
    return jsonify(schema.openapi_document())
