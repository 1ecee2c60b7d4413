"""RFC 8785 canonical JSON, and the action digest the service computes (PROTOCOL.md 5).

The service hashes the action it parsed from the request, so the digest here is taken
over the action as it travels: serialised with `json.dumps` and read back (tuples become
lists, integer keys become strings), then canonicalised.

RFC 8785 in short: objects with their members sorted by the UTF-16 code units of their
names, no whitespace, strings escaped as JSON's minimum (which `json.dumps` with
`ensure_ascii=False` does exactly), integers within +-(2^53 - 1) and every other number
written the way ECMAScript's Number.prototype.toString writes a double.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

MAX_SAFE_INTEGER = 2**53 - 1


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 serialisation of a JSON value (ValueError/TypeError if it is not one)."""
    parts: list[str] = []
    _write(value, parts)
    try:
        return "".join(parts).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("a string holds a lone surrogate: not Unicode text") from None


def action_digest(tool: str, args: Any) -> str:
    """`sha256:<hex>` of the canonical JSON of `{"tool": tool, "args": args}` as sent."""
    return digest_of({"tool": tool, "args": args})


def digest_of(action: Any) -> str:
    """`sha256:<hex>` of the canonical JSON of `action` after a JSON round trip."""
    sent = json.loads(json.dumps(action, allow_nan=False))
    return "sha256:" + hashlib.sha256(canonical_json(sent)).hexdigest()


def _write(value: Any, parts: list[str]) -> None:
    if value is None:
        parts.append("null")
    elif value is True:
        parts.append("true")
    elif value is False:
        parts.append("false")
    elif isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise ValueError(f"{value} is outside RFC 8785's exact integers (+-(2^53 - 1))")
        parts.append(str(int(value)))
    elif isinstance(value, float):
        parts.append(ecmascript_number(value))
    elif isinstance(value, str):
        parts.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, list | tuple):
        parts.append("[")
        for i, item in enumerate(value):
            if i:
                parts.append(",")
            _write(item, parts)
        parts.append("]")
    elif isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise TypeError("object member names must be strings")
        parts.append("{")
        for i, key in enumerate(
            sorted(value, key=lambda k: k.encode("utf-16-be", "surrogatepass"))
        ):
            if i:
                parts.append(",")
            parts.append(json.dumps(key, ensure_ascii=False))
            parts.append(":")
            _write(value[key], parts)
        parts.append("}")
    else:
        raise TypeError(f"{type(value).__name__} is not a JSON value")


def _utf16_units(name: str) -> bytes:
    """A member name's UTF-16 code units, as bytes that compare the same way."""
    return name.encode("utf-16-be", "surrogatepass")


def ecmascript_number(number: float) -> str:
    """A double as ECMAScript writes it (ECMA-262 Number::toString, radix 10)."""
    if not math.isfinite(number):
        raise ValueError(f"{number} is not a JSON number")
    if number == 0:
        return "0"  # -0 too
    sign = "-" if number < 0 else ""
    # repr gives the shortest digits that read back as the same double, as ECMAScript does.
    mantissa, _, exponent = repr(abs(number)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    all_digits = whole + fraction
    leading_zeros = len(all_digits) - len(all_digits.lstrip("0"))
    digits = all_digits.strip("0")  # s, with k = len(digits) digits
    k = len(digits)
    n = len(whole) + int(exponent or 0) - leading_zeros  # value = 0.digits x 10^n
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        power = n - 1
        written = digits if k == 1 else digits[0] + "." + digits[1:]
        text = f"{written}e{'+' if power >= 0 else '-'}{abs(power)}"
    return sign + text
