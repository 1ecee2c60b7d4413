"""The /aap/v1 door: an AAP client with `base_url = <countersign>/aap` works unmodified.

Thin views: read the bearer token and the body, call the door's domain functions, answer
JSON. Every answer carries `X-Request-ID` (a UUID), which an error body repeats as
`error.request_id`. Refusals of an authenticated request are audited like the API's
(`request.refused`, bounded per minute).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Blueprint, Response, g, request
from werkzeug.exceptions import HTTPException

from review.api.jsonbody import parse_json
from review.callbacks import long_poll
from review.errors import DomainError, InvalidRequest
from review.intake.refusals import Refusal, record_refusal
from review.observability.metrics import count_refusal, timed_intake
from review.services import Services, current_services

from . import instances, requests
from .errors import Answer, answer, refused
from .tokens import Credential, authenticate
from .wire import MAX_WAIT, duration_seconds, read_outcome, read_submission

log = logging.getLogger(__name__)
bp = Blueprint("aap", __name__, url_prefix="/aap/v1")
ANY_METHOD = ["GET", "POST", "PUT", "PATCH", "DELETE"]


class DoorRefusal(Exception):
    """What only HTTP knows: credentials, sizes, media types, routes."""

    def __init__(self, refusal: Answer):
        super().__init__(refusal.message)
        self.answer = refusal


@bp.before_request
def name_the_exchange() -> None:
    g.aap_request_id = str(uuid.uuid4())


@bp.after_request
def say_its_name(response: Response) -> Response:
    response.headers["X-Request-ID"] = g.get("aap_request_id") or str(uuid.uuid4())
    return response


def _answer(refusal: Answer) -> Response:
    count_refusal("aap", refusal.code)
    body = refusal.body(g.get("aap_request_id") or str(uuid.uuid4()))
    response = Response(json.dumps(body), refusal.status, mimetype="application/json")
    response.headers.update(refusal.headers)
    return response


@bp.errorhandler(DoorRefusal)
def on_door_refusal(error: DoorRefusal) -> Response:
    return _answer(error.answer)


@bp.errorhandler(DomainError)
def on_domain_error(error: DomainError) -> Response:
    return _answer(answer(error))


@bp.errorhandler(HTTPException)
def on_http_error(error: HTTPException) -> Response:
    code = "method_not_allowed" if error.code == 405 else "not_found"
    return _answer(refused(code, error.description or code))


@bp.errorhandler(Exception)
def on_unexpected(error: Exception) -> Response:
    log.exception("unexpected error in %s %s", request.method, request.path)
    return _answer(refused("internal", "the server failed; nothing was changed"))


# --- reading the request --------------------------------------------------------------


def credential(svc: Services) -> Credential:
    """The bearer token's credential; 401 (one answer for every failure) otherwise."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    found = authenticate(svc, token.strip()) if scheme.lower() == "bearer" else None
    if found is None:
        raise DoorRefusal(refused("invalid_credential", "send a valid AAP bearer token"))
    return found


def raw_body(svc: Services) -> bytes:
    limit = svc.settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise DoorRefusal(refused("payload_too_large", f"body is over {limit} bytes"))
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        raise DoorRefusal(refused("payload_too_large", f"body is over {limit} bytes"))
    return data


def json_body(svc: Services) -> tuple[Any, str]:
    """The body as JSON (strict: UTF-8, no NaN, bounded depth, no repeated keys) and as text."""
    raw = raw_body(svc)
    if request.mimetype != "application/json":
        raise DoorRefusal(refused("unsupported_media_type", "send Content-Type: application/json"))
    value = parse_json(raw, svc.settings.max_json_depth)
    text = raw.decode("utf-8")
    json.loads(text, object_pairs_hook=_no_repeated_keys)  # parse_json took the rest
    return value, text


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise InvalidRequest(
            "the body repeats a key", details=[{"path": "", "message": "repeats a key"}]
        )
    return dict(pairs)


def wait_seconds() -> int:
    """`?wait=30s` (a duration, at most 30 s are waited); 0 when absent."""
    given = request.args.get("wait")
    if given is None:
        return 0
    return min(duration_seconds(given, param="wait"), MAX_WAIT)


def client_gone() -> bool:
    sock = request.environ.get("gunicorn.socket") or request.environ.get("werkzeug.socket")
    return sock is not None and long_poll.socket_closed(sock)


@contextmanager
def refusals_audited(svc: Services, who: Credential) -> Iterator[None]:
    """A refusal of an authenticated request leaves an audit event (bounded per minute)."""
    try:
        yield
    except DomainError as exc:
        said = answer(exc)
        refusal = Refusal(said.status, said.code, said.message, exc.details or [])
        signer = requests.signer_of(svc, who)
        key = request.headers.get("Idempotency-Key")
        record_refusal(svc, signer, refusal, webhook_id=key, endpoint=request.path)
        raise


def _json(text: str, status: int = 200) -> Response:
    return Response(text, status, mimetype="application/json")


# --- the routes -----------------------------------------------------------------------


@bp.post("/requests")
def create_request():
    with timed_intake("aap") as timer:
        svc = current_services()
        who = credential(svc)
        with refusals_audited(svc, who):
            value, text = json_body(svc)
            submission = read_submission(value, text)
            made = requests.submit(svc, who, request.headers.get("Idempotency-Key"), submission)
        timer.answered(made.created)
    return _json(made.text, 201 if made.created else 200)


@bp.get("/requests/<request_id>")
def read_request(request_id: str):
    svc = current_services()
    who = credential(svc)
    with refusals_audited(svc, who):
        text = requests.read(svc, who, request_id, wait_seconds(), client_gone)
    return _json(text)


@bp.delete("/requests/<request_id>")
def cancel_request(request_id: str):
    svc = current_services()
    who = credential(svc)
    with refusals_audited(svc, who):
        text = requests.cancel(svc, who, request_id)
    return _json(text)


@bp.post("/requests/<request_id>/consume")
def consume_request(request_id: str):
    svc = current_services()
    who = credential(svc)
    raw_body(svc)  # none is expected; a large one is refused unread
    with refusals_audited(svc, who):
        text = requests.consume(svc, who, request_id, request.headers.get("Idempotency-Key"))
    return _json(text)


@bp.post("/requests/<request_id>/outcome")
def report_outcome(request_id: str):
    svc = current_services()
    who = credential(svc)
    with refusals_audited(svc, who):
        value, _ = json_body(svc)
        status, note = read_outcome(value)
        text = requests.report_outcome(svc, who, request_id, status, note)
    return _json(text)


@bp.post("/instances")
def provision_instance():
    svc = current_services()
    who = credential(svc)
    if not who.may_provision:
        raise DoorRefusal(
            refused("provisioner_token_required", "register instances with the agent's token")
        )
    with refusals_audited(svc, who):
        value, _ = json_body(svc)
        made = instances.provision(svc, who, request.headers.get("Idempotency-Key"), value)
    return _json(made.text, 201 if made.created else 200)


@bp.route("/", defaults={"rest": ""}, methods=ANY_METHOD)
@bp.route("/<path:rest>", methods=ANY_METHOD)
def unknown(rest: str):
    raise DoorRefusal(refused("not_found", "AAP has no such operation here"))
