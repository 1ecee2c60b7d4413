"""One schema: the published OpenAPI 3.1 document is the one requests are validated with,
and it describes every operation, header, error code and callback the service has."""

import copy
import json
from functools import cache

import fastjsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from sqlalchemy import select

from review import errors as domain_errors
from review.agents.killswitch import Actor, kill, revive
from review.api import openapi, schema
from review.api.errors import STATUS, codes_for
from review.api.jsonbody import MAX_SAFE_INTEGER, parse_json
from review.errors import DomainError
from review.models import OutboxEvent
from tests.helpers import approved, refund, reviewer

DOCUMENT_URI = "urn:countersign:openapi"


@pytest.fixture
def doc(client):
    return client.get("/api/v1/openapi.json").get_json()


def resolving(doc, name: str, *, strict: bool = False) -> Draft202012Validator:
    """A validator of components.schemas[name] that follows the document's references;
    `strict`: every object schema that does not say it is open is closed."""
    doc = close_objects(copy.deepcopy(doc)) if strict else doc
    registry = Registry().with_resource(DOCUMENT_URI, DRAFT202012.create_resource(doc))
    return Draft202012Validator(
        {"$ref": f"{DOCUMENT_URI}#/components/schemas/{name}"}, registry=registry
    )


@cache
def document_validator(name: str) -> Draft202012Validator:
    return resolving(openapi.openapi_document(), name)


def close_objects(node):
    """additionalProperties: false wherever a schema lists properties and says nothing more
    (the convention of review/api/openapi/resources.py for what the service sends)."""
    if isinstance(node, dict):
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            close_objects(value)
    elif isinstance(node, list):
        for value in node:
            close_objects(value)
    return node


def operations(doc):
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            yield f"{method.upper()} {path}", operation
    for name, item in doc["webhooks"].items():
        for method, operation in item.items():
            yield f"webhook {name} {method.upper()}", operation


# --- the document is valid OpenAPI 3.1 and describes every operation -----------------------


def test_the_document_is_served_and_is_valid_openapi_3_1(doc):
    assert doc["openapi"] == "3.1.0"
    validate(doc)  # openapi-spec-validator: the 3.1 meta-schema and every $ref
    assert set(doc["paths"]) == {
        "/api/v1/agents/{agent}/deferrals",
        "/api/v1/deferrals/{id}",
        "/api/v1/deferrals/{id}/cancel",
        "/api/v1/deferrals/{id}/execution",
        "/api/v1/agents/{agent}/status",
        "/api/v1/openapi.json",
    }
    for name, component in doc["components"]["schemas"].items():
        Draft202012Validator.check_schema(component), name


def test_the_validator_refuses_a_broken_document(doc):
    broken = copy.deepcopy(doc)
    broken["paths"]["/api/v1/deferrals/{id}"]["get"]["parameters"][0]["in"] = "body"
    with pytest.raises(OpenAPIValidationError):
        validate(broken)


def test_every_operation_has_a_unique_operation_id_and_a_declared_tag(doc):
    ids = [operation["operationId"] for _, operation in operations(doc)]
    assert len(ids) == len(set(ids)) == 9
    declared = {tag["name"] for tag in doc["tags"]}
    for name, operation in operations(doc):
        assert operation["tags"] and set(operation["tags"]) <= declared, name


def test_signed_requests_and_callbacks_name_the_three_standard_webhooks_headers(doc):
    headers = {
        name: doc["components"]["parameters"][name]["name"]
        for name in ("WebhookId", "WebhookTimestamp", "WebhookSignature")
    }
    assert set(headers.values()) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    for name, operation in operations(doc):
        if operation.get("security") == []:
            continue
        refs = {p["$ref"].rsplit("/", 1)[1] for p in operation["parameters"] if "$ref" in p}
        assert set(headers) <= refs, name


def test_every_error_status_lists_its_codes_and_a_429_or_503_its_retry_after(doc):
    for name, operation in operations(doc):
        for status, response in operation["responses"].items():
            if not status.isdigit() or int(status) < 400 or name.startswith("webhook"):
                continue
            schema_ = response["content"]["application/json"]["schema"]
            codes = schema_["properties"]["error"]["properties"]["code"]["enum"]
            assert codes == codes_for(int(status)) and codes, (name, status)
            assert ("headers" in response) == (status in ("429", "503")), (name, status)
        if name.startswith("POST /api/v1/agents"):
            retry_after = operation["responses"]["429"]["headers"]["Retry-After"]["$ref"]
            assert doc["components"]["headers"][retry_after.rsplit("/", 1)[1]]["required"]


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_every_code_the_domain_raises_has_its_status():
    """from_domain answers an unlisted code 422, which the document would not list."""
    codes = {cls.code for cls in _subclasses(DomainError)} | {DomainError.code}
    assert codes <= set(STATUS), codes - set(STATUS)
    assert domain_errors.RateLimited.code == "rate_limited" and STATUS["rate_limited"] == 429


def test_the_webhooks_are_the_three_callback_events(doc):
    assert set(doc["webhooks"]) == {"deferral.decided", "agent.killed", "agent.revived"}
    for name, item in doc["webhooks"].items():
        body = item["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        event = doc["components"]["schemas"][body.rsplit("/", 1)[1]]
        assert event["properties"]["type"] == {"const": name}


# --- one source: the validating schemas are the served ones ---------------------------------


def test_the_served_request_schemas_are_the_validating_ones(doc):
    served = doc["components"]["schemas"]
    assert served["DeferralRequest"] == openapi.DEFERRAL_REQUEST
    for name in ("DeferralRequest", "CancelRequest", "ExecutionReport"):
        assert schema._validator(name).schema is schema.checked_schema(name)
        # ... less the JsonValue references, whose rules parse_json applies (below).
        assert schema.checked_schema(name) == schema._without_json_values(served[name])
        assert "JsonValue" not in json.dumps(schema.checked_schema(name))


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
edge_values = st.recursive(
    st.sampled_from(
        [
            MAX_SAFE_INTEGER,
            -MAX_SAFE_INTEGER,
            MAX_SAFE_INTEGER + 1,
            -MAX_SAFE_INTEGER - 1,
            2**63,
            9007199254740991.0,
            9007199254740992.0,
            -1e16,
            1.7976931348623157e308,
            5e-324,
            "",
            "\x00",
            "a\x00",
            "\x00\n",
            "\n",
            True,
            None,
        ]
    )
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet="a\x00\n\x01", max_size=4),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(alphabet="k\x00\n", max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)


def passes_parse_json(value) -> bool:
    try:
        parse_json(json.dumps(value).encode(), max_depth=32)
    except DomainError:
        return False
    return True


@settings(max_examples=150, deadline=None)
@given(value=edge_values | json_values)
def test_json_value_in_the_document_is_what_parse_json_enforces(value):
    """The NUL and ±(2^53 - 1) limits stated in the schema are the ones every body meets."""
    assert document_validator("JsonValue").is_valid(value) == passes_parse_json(value), value


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
                json_values | edge_values
            )
        elif choice == "remove":
            del node[draw(st.sampled_from(sorted(node)))]
        else:
            node[draw(st.sampled_from(sorted(node)))] = draw(json_values | edge_values)
    return body


@pytest.mark.parametrize("name", sorted(VALID))
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_the_checks_of_a_body_accept_exactly_what_the_document_does(name, data):
    """parse_json, then fastjsonschema's compiled check, decide "valid" alone: for every
    body they must agree with the document's own schema (JsonValue references followed);
    and jsonschema, which explains a refusal, with the compiled check."""
    assert schema._validator(name).is_valid(VALID[name])
    whole = data.draw(st.booleans())
    body = data.draw(json_values) if whole else _mutated(VALID[name], data.draw)
    try:
        schema.quick_check(name)(body)
        quick = True
    except fastjsonschema.JsonSchemaValueException:
        quick = False
    parsed = passes_parse_json(body)
    if parsed:
        assert quick == schema._validator(name).is_valid(body), body
    assert (parsed and quick) == document_validator(name).is_valid(body), body


# --- what the service writes is what the document says -------------------------------------


def test_resources_the_service_writes_are_described_field_by_field(svc, agent, client, doc):
    """Every field of every resource the API answers is in the document (an object schema
    that does not say it is open lists its fields): a field added to the resource without
    its line in review/api/openapi/resources.py fails here."""
    deferral = resolving(doc, "Deferral", strict=True)
    rita = reviewer(svc)
    pending = agent.defer(
        refund(
            before={"status": "paid"},
            after={"status": "refunded"},
            rationale="asked by the customer",
            intent="refund my last invoice",
            resource={"type": "invoice", "id": "INV-1"},
            trace={"id": "t1", "url": "https://traces.example.com/t1"},
            labels={"team": "billing"},
            risk={"score": 90, "reasons": ["large"]},
        )
    ).get_json()
    done = approved(svc, agent, rita)
    report = {
        "outcome": "succeeded",
        "action_digest": done["action_digest"],
        "result": {"n": 1},
        "credential": {"type": "api_key", "id": "key_1"},
    }
    executed = agent.post_json(f"/api/v1/deferrals/{done['id']}/execution", report).get_json()
    other = agent.defer(refund(summary="another")).get_json()
    cancelled = agent.post_json(
        f"/api/v1/deferrals/{other['id']}/cancel", {"reason": "no longer needed"}
    ).get_json()
    for resource in (pending, done, executed, cancelled):
        assert list(deferral.iter_errors(resource)) == [], resource
    assert executed["execution"]["credential"] and done["decision"]["receipt"]

    status = agent.get(f"/api/v1/agents/{agent.slug}/status").get_json()
    assert list(resolving(doc, "AgentStatus", strict=True).iter_errors(status)) == []
    error = agent.defer({"nope": 1}).get_json()
    assert list(resolving(doc, "Error", strict=True).iter_errors(error)) == []


def test_callbacks_the_service_queues_are_the_documented_events(callback_world, client, doc):
    world = callback_world()
    approved(world.svc, world.agent, reviewer(world.svc))
    olivia = Actor("user", "olivia")
    kill(world.svc, world.agent.slug, olivia, "runaway loop")
    revive(world.svc, world.agent.slug, olivia, "fixed")
    with world.svc.db.read() as session:
        bodies = [json.loads(e.body) for e in session.scalars(select(OutboxEvent))]
    assert {b["type"] for b in bodies} == {"deferral.decided", "agent.killed", "agent.revived"}
    for body in bodies:
        post = doc["webhooks"][body["type"]]["post"]
        ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        validator = resolving(doc, ref.rsplit("/", 1)[1], strict=True)
        assert list(validator.iter_errors(body)) == [], body


def test_whole_number_floats_where_the_schema_says_integer_are_taken_as_integers(agent, svc):
    """JSON Schema counts 31.0 an integer, so the document does; PostgreSQL's integer
    columns do not (schemathesis found this as a 500)."""
    raw = json.dumps(refund(risk={"score": 31.5}, expires_in=3600.5))
    raw = raw.replace("31.5", "91.0").replace("3600.5", "3600.0")
    response = agent.defer(raw.encode())
    assert response.status_code == 202, response.get_data(as_text=True)
    risk = response.get_json()["risk"]
    assert risk["agent_score"] == 91 and type(risk["agent_score"]) is int
    assert type(risk["score"]) is int and risk["score"] >= 91
