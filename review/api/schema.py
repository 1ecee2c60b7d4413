"""Validating requests against the one schema of the API (review/api/openapi/).

OpenAPI 3.1 schemas are JSON Schema 2020-12, so the request bodies are checked by
jsonschema's Draft 2020-12 validator straight from the document that
`GET /api/v1/openapi.json` serves; there is no second copy.

Most requests are valid, and walking a schema with jsonschema costs more than the rest
of reading the request; so the same schema is also compiled to Python by fastjsonschema
(it uses only keywords that mean the same in its draft 7: type, properties, required,
additionalProperties, lengths, bounds, pattern, items, propertyNames), which answers
"valid" in a few microseconds. Only a request it refuses is walked by jsonschema, which
has the last word and writes the details (tests/test_openapi.py checks the two agree).

One part of the schemas is checked elsewhere: JsonValue, the rules for any JSON value
(no NUL in strings, numbers within ±(2^53 - 1)) that free-form fields such as `before`
refer to. parse_json (review/api/jsonbody.py) has applied them to every value of every
body before it gets here, in one pass, and tests/test_openapi.py holds the two equal;
following the $ref through a large `before` again cost seconds (0.6 s for a 700 KB body
in fastjsonschema, 11 s in jsonschema), so both validators leave those references out.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import fastjsonschema
from jsonschema import Draft202012Validator

from review.api.jsonbody import NUL_MESSAGE
from review.api.openapi import openapi_document, patterns
from review.errors import InvalidRequest
from review.intake.diffing import json_pointer

MAX_DETAILS = 50
JSON_VALUE_REF = "#/components/schemas/JsonValue"


@cache
def checked_schema(name: str) -> dict[str, Any]:
    """The document's schema `name`, less the JsonValue references parse_json answers for."""
    schema = _without_json_values(openapi_document()["components"]["schemas"][name])
    Draft202012Validator.check_schema(schema)
    return schema


def _without_json_values(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_without_json_values(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    return {
        key: _without_json_values(value)
        for key, value in schema.items()
        if not (key == "$ref" and value == JSON_VALUE_REF)
    }


@cache
def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(checked_schema(name))


def _message(error) -> str:
    v = error.validator
    value = error.validator_value
    if v == "type":
        kinds = value if isinstance(value, list) else [value]
        return "must be " + " or ".join(
            {"object": "an object", "array": "an array", "integer": "an integer"}.get(k, f"a {k}")
            for k in kinds
        )
    if v == "minLength":
        return "must not be empty" if value == 1 else f"must be at least {value} characters"
    if v == "enum":
        return "must be one of " + ", ".join(map(str, value))
    messages = {
        "maxLength": f"must be at most {value} characters",
        "minimum": f"must be at least {value}",
        "maximum": f"must be at most {value}",
        "maxProperties": f"must have at most {value} entries",
        "maxItems": f"must have at most {value} items",
        "pattern": NUL_MESSAGE
        if value == patterns.NO_NUL
        else error.schema.get("description", "has the wrong format"),
    }
    return messages.get(v, "is not valid")


@cache
def quick_check(name: str) -> Callable[[Any], Any]:
    """The schema compiled to Python: raises JsonSchemaValueException on the first error."""
    return fastjsonschema.compile(checked_schema(name), use_default=False)


def validate(name: str, instance: Any) -> None:
    """Raise 422 `invalid_request` listing every failing field as a JSON Pointer.

    A valid instance has its whole-number floats where the schema says integer made ints
    (31.0 becomes 31): JSON Schema counts 31.0 an integer, and the database's integer
    columns and typed clients want one.
    """
    try:
        quick_check(name)(instance)
        _whole_numbers(_integer_branches(name), instance)
        return
    except fastjsonschema.JsonSchemaValueException:
        pass  # jsonschema decides, and says where
    details: list[dict[str, str]] = []
    for error in _validator(name).iter_errors(instance):
        path = list(error.absolute_path)
        if error.validator == "required":
            for field in error.validator_value:
                if isinstance(error.instance, dict) and field not in error.instance:
                    details.append({"path": json_pointer(path + [field]), "message": "required"})
        elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = set(error.schema.get("properties", {}))
            for field in error.instance:
                if field not in allowed:
                    details.append(
                        {"path": json_pointer(path + [field]), "message": "unknown field"}
                    )
        elif error.validator == "propertyNames":
            details.append({"path": json_pointer(path), "message": "label names are 1-64 chars"})
        else:
            details.append({"path": json_pointer(path), "message": _message(error)})
    if details:
        details.sort(key=lambda d: d["path"])
        unique = list({(d["path"], d["message"]): d for d in details}.values())
        raise InvalidRequest("request does not match the schema", details=unique[:MAX_DETAILS])
    _whole_numbers(_integer_branches(name), instance)


@cache
def _integer_branches(name: str) -> dict[str, Any]:
    """The named schema cut down to the branches `_whole_numbers` can act on: those that
    lead to an integer. It walks the request along the schema, and a request's free-form
    parts (an action's args, before and after) lead to none: the walk skips them."""
    return _pruned(checked_schema(name)) or {}


def _pruned(schema: Any) -> dict[str, Any] | None:
    if not isinstance(schema, dict):
        return None
    if schema.get("type") == "integer":
        return {"type": "integer"}
    kept: dict[str, Any] = {}
    properties = {}
    for key, child in (schema.get("properties") or {}).items():
        branch = _pruned(child)
        if branch is not None:
            properties[key] = branch
    if properties:
        kept["properties"] = properties
    items = _pruned(schema.get("items"))
    if items is not None:
        kept["items"] = items
    return kept or None


def _whole_numbers(schema: dict[str, Any], value: Any) -> None:
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key, item in value.items():
            if key not in properties:
                continue
            if properties[key].get("type") == "integer" and isinstance(item, float):
                value[key] = int(item)
            else:
                _whole_numbers(properties[key], item)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            if schema["items"].get("type") == "integer" and isinstance(item, float):
                value[index] = int(item)
            else:
                _whole_numbers(schema["items"], item)
