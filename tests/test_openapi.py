"""One schema: the published OpenAPI 3.1 document is the one requests are validated with."""

import json

import fastjsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from review.api import openapi, schema
from tests.helpers import refund


def test_the_document_is_served_as_openapi_3_1(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc["openapi"] == "3.1.0"
    assert set(doc["paths"]) == {
        "/api/v1/agents/{agent}/deferrals",
        "/api/v1/deferrals/{id}",
        "/api/v1/deferrals/{id}/cancel",
        "/api/v1/deferrals/{id}/execution",
        "/api/v1/agents/{agent}/status",
    }
    for name, component in doc["components"]["schemas"].items():
        Draft202012Validator.check_schema(component), name


def test_the_served_request_schema_is_the_validating_one(client):
    served = client.get("/api/v1/openapi.json").get_json()["components"]["schemas"]
    assert served["DeferralRequest"] == openapi.DEFERRAL_REQUEST
    assert (
        schema._validator("DeferralRequest").schema
        is openapi.openapi_document()["components"]["schemas"]["DeferralRequest"]
    )


def test_created_resources_match_the_published_response_schema(agent, client):
    doc = client.get("/api/v1/openapi.json").get_json()
    validator = Draft202012Validator(doc["components"]["schemas"]["Deferral"])
    created = agent.defer(refund()).get_json()
    assert list(validator.iter_errors(created)) == []
    error = agent.defer({"nope": 1}).get_json()
    assert (
        list(Draft202012Validator(doc["components"]["schemas"]["Error"]).iter_errors(error)) == []
    )


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**6), max_value=10**6)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0.0, 1.0, 100.0, 101.0, -1.0, 2.5, 86400.0, 604801.0])
    | st.text(max_size=12)
    | st.sampled_from(["", "x" * 201, "https://t.example/a", "ftp://x", "env", "a b"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
VALID = {
    "DeferralRequest": refund(expires_in=3600, resource={"type": "invoice", "id": "INV-1"}),
    "CancelRequest": {"reason": "not needed any more"},
    "ExecutionReport": {"outcome": "succeeded", "action_digest": "sha256:" + "0" * 64},
}


def _mutated(valid: dict, draw) -> dict:
    """A valid body with a few values replaced, removed or added, at any depth."""
    body = json.loads(json.dumps(valid))
    for _ in range(draw(st.integers(1, 3))):
        node = body
        while isinstance(node, dict) and node and draw(st.booleans()):
            child = node[draw(st.sampled_from(sorted(node)))]
            if not isinstance(child, dict):
                break
            node = child
        if not isinstance(node, dict):
            continue
        choice = draw(st.sampled_from(["replace", "remove", "add"]))
        if choice == "add" or not node:
            node[draw(st.text(max_size=8) | st.sampled_from(sorted(node) or ["x"]))] = draw(
                json_values
            )
        elif choice == "remove":
            del node[draw(st.sampled_from(sorted(node)))]
        else:
            node[draw(st.sampled_from(sorted(node)))] = draw(json_values)
    return body


@pytest.mark.parametrize("name", sorted(VALID))
@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_the_quick_check_and_jsonschema_agree_on_what_is_valid(name, data):
    """fastjsonschema's compiled check decides "valid" alone: it must never accept more."""
    assert schema._validator(name).is_valid(VALID[name])
    whole = data.draw(st.booleans())
    body = data.draw(json_values) if whole else _mutated(VALID[name], data.draw)
    reference = schema._validator(name).is_valid(body)
    try:
        schema.quick_check(name)(body)
        quick = True
    except fastjsonschema.JsonSchemaValueException:
        quick = False
    assert quick == reference, body
