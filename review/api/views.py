"""The /api/v1 views: read the raw request, authenticate, call the domain, answer JSON."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Blueprint, Response, jsonify, request
from flask.json.provider import DefaultJSONProvider
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.exceptions import ClientDisconnected, HTTPException

from review.agents.executions import report_execution
from review.agents.registry import Signer, signers
from review.agents.status import status_json
from review.api import schema
from review.api.errors import (
    HTTP_STATUS,
    ApiError,
    as_api_error,
    from_domain,
    not_found,
    unauthorized,
)
from review.api.jsonbody import parse_json
from review.api.openapi import openapi_document
from review.callbacks import long_poll
from review.errors import DomainError
from review.intake.receive import receive_deferral
from review.intake.refusals import Refusal, record_refusal
from review.models import Deferral
from review.observability.metrics import count_refusal, timed_intake
from review.resources import deferral_resource
from review.reviewing.ending import cancel_deferral
from review.services import Services, current_services
from review.signing import SignatureError, parse_headers

log = logging.getLogger(__name__)
bp = Blueprint("api", __name__, url_prefix="/api/v1")
HTTP_CODES = {status: code for code, status in HTTP_STATUS.items()}


@bp.errorhandler(ApiError)
def on_api_error(error: ApiError) -> Response:
    count_refusal("api", error.code)
    response = jsonify(error.body())
    response.status_code = error.status
    response.headers.update(error.headers)
    return response


@bp.errorhandler(DomainError)
def on_domain_error(error: DomainError) -> Response:
    return on_api_error(from_domain(error))


@bp.errorhandler(HTTPException)
def on_http_error(error: HTTPException) -> Response:
    status = error.code or 400
    code = HTTP_CODES.get(status, "bad_request")
    # Keep what HTTP says beside the status (a 405's Allow), not the HTML's Content-Type.
    headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
    return on_api_error(ApiError(status, code, error.description or code, headers=headers))


@bp.errorhandler(Exception)
def on_unexpected(error: Exception) -> Response:
    log.exception("unexpected error in %s %s", request.method, request.path)
    return on_api_error(ApiError(500, "internal_error", "the server failed; nothing was changed"))


def raw_body(svc: Services) -> bytes:
    """The body, refused with 413 before reading when it is over the limit."""
    environ = request.environ
    length = environ.get("CONTENT_LENGTH")
    chunked = environ.get("HTTP_TRANSFER_ENCODING")
    if length in (None, "", "0") and not chunked:
        # Neither header: HTTP says there is no body (a GET's, signed as empty). Known
        # without building werkzeug's stream: the status read is polled, and that was a
        # twentieth of its CPU.
        return b""
    limit = svc.settings.max_body_bytes
    if not chunked and length.isascii() and length.isdigit():
        # A plain Content-Length (an agent's every POST): its bytes read straight from the
        # server's input, as werkzeug's LimitedStream would, without building the request's
        # headers, content length and stream (a tenth of what intake's view paid to read).
        size = int(length)
        if size > limit:
            raise ApiError(413, "payload_too_large", f"body is over {limit} bytes")
        data = environ["wsgi.input"].read(size)
        if len(data) != size:
            raise ClientDisconnected()  # as LimitedStream: a 400
        return data
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "payload_too_large", f"body is over {limit} bytes")
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, "payload_too_large", f"body is over {limit} bytes")
    return data


def require_json(svc: Services, body: bytes) -> Any:
    # A Content-Type of exactly application/json (what agents send) is known without
    # werkzeug's parse of its parameters.
    if request.environ.get("CONTENT_TYPE") != "application/json":
        if request.mimetype != "application/json":
            raise ApiError(415, "unsupported_media_type", "send Content-Type: application/json")
        charset = request.mimetype_params.get("charset", "utf-8").lower()
        if charset not in ("utf-8", "utf8"):
            raise ApiError(415, "unsupported_media_type", "send JSON as UTF-8")
    return parse_json(body, svc.settings.max_json_depth)


def signature_headers() -> dict[str, str]:
    """The three Standard Webhooks headers, as `request.headers.get` gives them, read
    straight from the WSGI environ (its case-blind lookups were a twentieth of a status
    read's CPU)."""
    environ = request.environ
    return {
        "webhook-id": environ.get("HTTP_WEBHOOK_ID", ""),
        "webhook-timestamp": environ.get("HTTP_WEBHOOK_TIMESTAMP", ""),
        "webhook-signature": environ.get("HTTP_WEBHOOK_SIGNATURE", ""),
    }


def authenticate_agent(svc: Services, slug: str, body: bytes) -> Signer:
    """The agent named in the path, if it signed this request; 401 otherwise.

    A signer cached a few seconds ago is asked first, without opening a database session
    (opening and ending one cost a status read as much as its Redis round trip); when it
    does not say yes, the agent is read again (a secret rotated a moment ago works)."""
    try:
        signed = parse_headers(signature_headers())
    except SignatureError:
        raise unauthorized() from None
    cached = svc.secrets.cached(slug)
    if cached is not None and signed.signed_by_any(svc.secrets.secrets_for(cached), body):
        return cached
    with svc.db.read() as session:
        signer = svc.secrets.signer(session, slug, fresh=True)
    if signer is not None and signed.signed_by_any(svc.secrets.secrets_for(signer), body):
        return signer
    raise unauthorized()


def authenticate_for_deferral(
    svc: Services, session: Session, deferral_id: str, body: bytes
) -> Signer:
    """The deferral's own agent, if it signed this request.

    The path names no agent, so the secret comes from the deferral's agent. A request
    correctly signed by a different agent answers 404, as if the deferral did not
    exist (PROTOCOL.md section 3); one signed by nobody we know answers 401.
    """
    try:
        signed = parse_headers(signature_headers())
    except SignatureError:
        raise unauthorized() from None
    owner_id = None
    if len(deferral_id) <= 40:
        # A canary is no agent's (review/canaries/): signed by its agent, it answers 404.
        owner_id = session.scalar(
            select(Deferral.agent_id).where(Deferral.id == deferral_id, Deferral.canary.is_(None))
        )
    if owner_id is not None:
        owner = signers(session, agent_id=owner_id)
        if owner and signed.signed_by_any(svc.secrets.secrets_for(owner[0]), body):
            return owner[0]
    for other in signers(session):
        if signed.signed_by_any(svc.secrets.secrets_for(other), body):
            raise not_found()
    raise unauthorized()


@contextmanager
def refusals_audited(svc: Services, agent: Signer, webhook_id: str | None) -> Iterator[None]:
    """Answer a refusal of an authenticated request as PROTOCOL.md says, and audit it."""
    try:
        yield
    except (ApiError, DomainError) as exc:
        error = as_api_error(exc)
        refusal = Refusal(error.status, error.code, error.message, error.details or [])
        record_refusal(svc, agent, refusal, webhook_id=webhook_id, endpoint=request.path)
        raise error from None


def checked_json(svc: Services, body: bytes, schema_name: str) -> Any:
    """The body as JSON that passed the named request schema (415, 400 or 422 otherwise)."""
    payload = require_json(svc, body)
    schema.validate(schema_name, payload)
    return payload


@bp.post("/agents/<slug>/deferrals")
def create_deferral(slug: str):
    with timed_intake("api") as timer:
        svc = current_services()
        body = raw_body(svc)
        agent = authenticate_agent(svc, slug, body)
        webhook_id = request.environ["HTTP_WEBHOOK_ID"]  # there: the signature checked it
        with refusals_audited(svc, agent, webhook_id):
            received = receive_deferral(
                svc, agent, webhook_id, lambda: checked_json(svc, body, "DeferralRequest")
            )
        timer.answered(received.created)
    status = 202 if received.created else 200
    return json_answer(deferral_resource(received.deferral, received.agent_slug), status)


# jsonify's encoding outside debug mode (compact, ASCII-escaped, Flask's default for
# dates and the like), built once: json.dumps with options builds an encoder every call.
_ANSWER_JSON = json.JSONEncoder(
    ensure_ascii=True, separators=(",", ":"), default=DefaultJSONProvider.default
)


def json_answer(resource: dict[str, Any], status: int) -> Response:
    """`jsonify(resource), status` as it answers outside debug mode, byte for byte
    (a newline at the end), without Flask's JSON provider and the (response, status)
    tuple's handling in between."""
    return Response(_ANSWER_JSON.encode(resource) + "\n", status, content_type="application/json")


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


def client_gone() -> bool:
    """Whether the client of this request has closed its connection (gunicorn and the
    werkzeug server hand us the socket; another server: never known, never gone)."""
    sock = request.environ.get("gunicorn.socket") or request.environ.get("werkzeug.socket")
    return sock is not None and long_poll.socket_closed(sock)


@bp.get("/deferrals/<deferral_id>")
def read_deferral(deferral_id: str):
    """One deferral; with `?wait=N`, once it has ended or N seconds have passed."""
    svc = current_services()
    body = raw_body(svc)
    with svc.db.read() as session:
        agent = authenticate_for_deferral(svc, session, deferral_id, body)
    with refusals_audited(svc, agent, request.headers.get("webhook-id")):
        resource = long_poll.read_deferral(
            svc, deferral_id, wait_seconds(), agent_slug=agent.slug, client_gone=client_gone
        )
    return jsonify(resource)


@bp.post("/deferrals/<deferral_id>/cancel")
def cancel(deferral_id: str):
    svc = current_services()
    body = raw_body(svc)
    with svc.db.read() as session:
        agent = authenticate_for_deferral(svc, session, deferral_id, body)
    with refusals_audited(svc, agent, request.headers.get("webhook-id")):
        payload = checked_json(svc, body, "CancelRequest")
        resource = cancel_deferral(svc, deferral_id, agent, payload["reason"])
    return jsonify(resource)


@bp.post("/deferrals/<deferral_id>/execution")
def execution(deferral_id: str):
    svc = current_services()
    body = raw_body(svc)
    with svc.db.read() as session:
        agent = authenticate_for_deferral(svc, session, deferral_id, body)
    webhook_id = request.headers["webhook-id"]
    with refusals_audited(svc, agent, webhook_id):
        payload = checked_json(svc, body, "ExecutionReport")
    # A refused report is audited as a violation by the domain, not as a refused request.
    reported = report_execution(svc, deferral_id, agent, payload, webhook_id)
    return jsonify(reported.resource), 201 if reported.created else 200


@bp.get("/agents/<slug>/status")
def status(slug: str):
    """The kill switch, polled: served from Redis (review/agents/status.py)."""
    svc = current_services()
    body = raw_body(svc)
    signer = authenticate_agent(svc, slug, body)  # no database while the signer is cached
    return Response(status_json(svc, signer), mimetype="application/json")


@bp.get("/openapi.json")
def openapi():
    return jsonify(openapi_document())
