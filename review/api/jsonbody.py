"""Strict JSON request bodies: UTF-8, no NaN/Infinity, bounded depth, storable everywhere.

Beyond what `json.loads` checks, every string must be storable and canonicalisable:
no lone surrogates (not Unicode text at all: 400) and no NUL characters (PostgreSQL
cannot store them: 422); integers must fit RFC 8785's exact range (|n| <= 2^53 - 1)
and numbers must fit a double (`1e400` parses as infinity, which neither RFC 8785 nor
PostgreSQL's JSON can hold), because the action digest and the audit chain canonicalise
them (422, with the pointer).
"""

from __future__ import annotations

import json
import math
from typing import Any

from review.errors import InvalidRequest, MalformedJson
from review.intake.diffing import json_pointer

MAX_SAFE_INTEGER = 2**53 - 1


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(raw: bytes, max_depth: int) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedJson("body is not valid UTF-8") from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise MalformedJson(f"JSON nests deeper than {max_depth}") from None
    except ValueError as exc:
        raise MalformedJson(f"body is not valid JSON: {_short(exc)}") from None
    _check_tree(value, max_depth)
    return value


def _short(exc: Exception) -> str:
    return str(exc)[:200]


def _check_tree(root: Any, max_depth: int) -> None:
    """One iterative pass: depth, strings and numbers (see the module docstring)."""
    stack: list[tuple[Any, int, tuple]] = [(root, 1, ())]
    while stack:
        node, depth, path = stack.pop()
        if isinstance(node, dict | list):
            if depth > max_depth:
                raise MalformedJson(f"JSON nests deeper than {max_depth}")
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for key, child in items:
                if isinstance(key, str):
                    _check_string(key, path + (key,))
                stack.append((child, depth + 1, path + (key,)))
        elif isinstance(node, str):
            _check_string(node, path)
        elif isinstance(node, int) and not isinstance(node, bool) and abs(node) > MAX_SAFE_INTEGER:
            _refuse_number(path, "integer outside ±(2^53 - 1)")
        elif isinstance(node, float) and not math.isfinite(node):
            # The literals NaN and Infinity never get here (400 above): this number overflowed.
            _refuse_number(path, "number beyond the range of a double (about ±1.8e308)")


def _refuse_number(path: tuple, message: str) -> None:
    raise InvalidRequest(
        "request does not match the schema",
        details=[{"path": json_pointer(list(path)), "message": message}],
    )


def _check_string(text: str, path: tuple) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedJson("JSON string holds a lone surrogate") from None
    if "\x00" in text:
        raise InvalidRequest(
            "request does not match the schema",
            details=[
                {"path": json_pointer(list(path)), "message": "must not contain NUL characters"}
            ],
        )
