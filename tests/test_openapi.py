"""One schema: the published OpenAPI 3.1 document is the one requests are validated with."""

from jsonschema import Draft202012Validator

from review.api import schema
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
    assert served["DeferralRequest"] == schema.DEFERRAL_REQUEST
    assert (
        schema._validator("DeferralRequest").schema
        is schema.openapi_document()["components"]["schemas"]["DeferralRequest"]
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
