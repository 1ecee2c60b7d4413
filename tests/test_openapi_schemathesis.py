"""schemathesis against a running Countersign (gunicorn, tests/client_server.py):
requests generated from the served document, each signed with a real agent's secret as an
agent signs it (PROTOCOL.md section 2), answered without a 5xx, with a documented status,
content type, headers and body; and a deferral the document calls valid is accepted."""

from __future__ import annotations

import uuid

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from review.signing import sign_headers
from tests.helpers import approved, refund, reviewer

pytest_plugins = ["tests.client_server"]

EXAMPLES_PER_OPERATION = 12
NEGATIVE_EXAMPLES = 6
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


class SignedAs(requests.auth.AuthBase):
    """requests' hook for a prepared request: signs the exact bytes that go out, with a
    fresh webhook-id, as an agent does (review/signing.py, the Standard Webhooks scheme)."""

    def __init__(self, secret: str):
        self.secret = secret

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        body = body.encode() if isinstance(body, str) else body
        request.headers.update(sign_headers(self.secret, f"msg_{uuid.uuid4().hex}", body))
        return request


def real_deferrals(svc, agent) -> list[str]:
    """This agent's deferrals in several states, for the generated requests to find."""
    pending = agent.defer().get_json()["id"]
    done = approved(svc, agent, reviewer(svc))["id"]
    withdrawn = agent.defer(refund(summary="to withdraw")).get_json()["id"]
    agent.post_json(f"/api/v1/deferrals/{withdrawn}/cancel", {"reason": "not needed"})
    return [pending, done, withdrawn]


def exercise(
    operation, base_url: str, agent, ids: list[str], mode=GenerationMode.POSITIVE
) -> list[int]:
    """Generated requests to `operation`, signed; the statuses. Positive: what the document
    calls valid. Negative: what it calls invalid (answered by a documented refusal)."""
    seen: list[int] = []
    creates = operation.label.startswith("POST /api/v1/agents") and mode.is_positive

    @settings(
        max_examples=EXAMPLES_PER_OPERATION if mode.is_positive else NEGATIVE_EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode), real=st.integers(0, len(ids)))
    def exchange(case, real):
        # Mostly this agent's own deferrals and slug, else what was generated (404, 401).
        if "id" in (case.path_parameters or {}) and real < len(ids):
            case.path_parameters["id"] = ids[real]
        if "agent" in (case.path_parameters or {}) and real < len(ids):
            case.path_parameters["agent"] = agent.slug
        if case.query and isinstance(case.query.get("wait"), int):
            case.query["wait"] = min(case.query["wait"], 1)  # a long-poll, kept short
        for name in SIGNATURE_HEADERS:  # the signing hook writes them
            (case.headers or {}).pop(name, None)
        response = case.call(base_url=base_url, auth=SignedAs(agent.secret), timeout=30)
        seen.append(response.status_code)
        case.validate_response(response, checks=CHECKS, transport_kwargs={"base_url": base_url})
        if creates and case.path_parameters["agent"] == agent.slug:
            # A deferral the document calls valid is one the service takes, unless it
            # carries a principal's token, which no schema can verify (PROTOCOL.md 17).
            if "token" in case.body["on_behalf_of"] and response.status_code == 422:
                assert response.json()["error"]["code"] == "invalid_principal_token"
            else:
                assert response.status_code == 202, response.text

    exchange()
    return seen


@pytest.mark.timeout(300)  # gunicorn starts and stops: slow on a busy machine
def test_signed_generated_requests_get_documented_answers_and_never_a_5xx(
    countersign_server, svc, agent
):
    """One running instance for every operation (starting gunicorn is most of the time)."""
    base_url = countersign_server.base_url
    ids = real_deferrals(svc, agent)
    schema = schemathesis.openapi.from_url(base_url + "/api/v1/openapi.json")
    operations = {result.ok().label: result.ok() for result in schema.get_all_operations()}
    # Every operation of the document but the one it was loaded from, which schemathesis
    # leaves out (tests/test_openapi.py reads that one).
    assert set(operations) == {
        "POST /api/v1/agents/{agent}/deferrals",
        "GET /api/v1/deferrals/{id}",
        "POST /api/v1/deferrals/{id}/cancel",
        "POST /api/v1/deferrals/{id}/execution",
        "GET /api/v1/agents/{agent}/status",
    }
    statuses = {label: exercise(op, base_url, agent, ids) for label, op in operations.items()}
    for label, op in operations.items():
        statuses[label] += exercise(op, base_url, agent, ids, GenerationMode.NEGATIVE)
    assert 202 in statuses["POST /api/v1/agents/{agent}/deferrals"], statuses
    assert 200 in statuses["GET /api/v1/deferrals/{id}"], statuses

    unsigned = operations["GET /api/v1/deferrals/{id}"].Case(path_parameters={"id": ids[0]})
    response = unsigned.call(base_url=base_url)
    assert response.status_code == 401
    unsigned.validate_response(response, checks=CHECKS)
