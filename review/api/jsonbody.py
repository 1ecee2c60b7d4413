"""Strict JSON request bodies: UTF-8, no NaN/Infinity, bounded depth, storable everywhere.

Beyond what `json.loads` checks, every string must be storable and canonicalisable:
no lone surrogates (not Unicode text at all: 400) and no NUL characters (PostgreSQL
cannot store them: 422); every number must be within RFC 8785's exact range,
|n| <= 2^53 - 1, however it is written, because the action digest and the audit chain
canonicalise them (422, with the pointer). JSON does not tell 1e16 from
10000000000000000, nor does JSON Schema; every double beyond the bound is a whole
number, and `1e400` parses as infinity. These are the rules of the document's JsonValue
schema (review/api/openapi/request_bodies.py), applied here to every value of the body in one
pass, keys included.
"""

from __future__ import annotations

import json
from typing import Any

from review.errors import InvalidRequest, MalformedJson
from review.intake.diffing import json_pointer

MAX_SAFE_INTEGER = 2**53 - 1
OUTSIDE_RANGE = "number outside ±(2^53 - 1)"
NUL_MESSAGE = "must not contain NUL characters"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(raw: bytes, max_depth: int) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedJson("body is not valid UTF-8") from None
    suspect = False
    try:
        try:
            value = json.loads(
                text, parse_constant=_refuse_constant, parse_int=_safe_int, parse_float=_safe_float
            )
        except _OutOfRange:  # the walk below refuses it, with its pointer
            suspect = True
            value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise MalformedJson(f"JSON nests deeper than {max_depth}") from None
    except ValueError as exc:
        raise MalformedJson(f"body is not valid JSON: {_short(exc)}") from None
    if suspect or not _plainly_fine(text, max_depth):
        _check_tree(value, max_depth)
    return value


class _OutOfRange(Exception):  # not a ValueError: json.loads must not call it malformed
    pass


def _safe_int(digits: str) -> int:
    number = int(digits)
    if not -MAX_SAFE_INTEGER <= number <= MAX_SAFE_INTEGER:
        raise _OutOfRange
    return number


def _safe_float(digits: str) -> float:
    number = float(digits)
    if not -MAX_SAFE_INTEGER <= number <= MAX_SAFE_INTEGER:  # 1e400 parses as infinity
        raise _OutOfRange
    return number


def _plainly_fine(text: str, max_depth: int) -> bool:
    """Whether the text alone shows what the walk would check, so it need not run.

    Its numbers were checked as they were parsed (`_safe_int`, `_safe_float`). A lone
    surrogate or a NUL in a string can only be written as a `\\u` escape: the text was
    decoded as strict UTF-8, and json.loads refuses raw control characters in strings.
    Nesting is at most the count of opening brackets (those inside strings only add).
    """
    return "\\u" not in text and text.count("{") + text.count("[") <= max_depth


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
        elif (
            isinstance(node, int | float)
            and not isinstance(node, bool)
            and not -MAX_SAFE_INTEGER <= node <= MAX_SAFE_INTEGER
        ):  # NaN never gets here (its literal is 400 above); an overflow is infinite.
            _refuse_number(path, OUTSIDE_RANGE)


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
            details=[{"path": json_pointer(list(path)), "message": NUL_MESSAGE}],
        )
