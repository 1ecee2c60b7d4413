"""The rule kinds of the risk policy: what each one matches, in the request or in its effect.

Each kind names its parameters (required and optional, with their types), the
placeholders its `detail` may use, and a matcher that returns those placeholders'
values for the first match, or None. config/policy.toml's header documents them.

Kinds on the request: `tool`, `argument_over`, `argument_value`, `external_address`,
`list_size`, `label`, `principal`. Kinds on the effect, the stored before/after diff:
`diff_field` and `diff_size` (here), `field_value`, `number_lowered`, `number_raised`,
`list_shrunk`, `key_removed`, `turned_off`, `diff_removals` (review/intake/policy_effects.py).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from review.intake.policy_effects import (
    Values,
    is_like,
    is_value,
    match_diff_removals,
    match_field_value,
    match_key_removed,
    match_list_shrunk,
    match_number_lowered,
    match_number_raised,
    match_turned_off,
    shown,
)
from review.intake.policy_globs import first_match, lowered
from review.intake.policy_windows import check_window_params

if TYPE_CHECKING:
    from review.intake.policy import Facts

EMAIL = re.compile(r"[A-Za-z0-9._%+'-]+@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
MAX_WALK = 20_000  # values inspected per deferral; arguments are capped at 1 MiB anyway

Matcher = Callable[[dict[str, Any], "Facts"], Values]


@dataclass(frozen=True)
class Kind:
    required: dict[str, type | tuple[type, ...]]
    placeholders: tuple[str, ...]
    match: Matcher
    optional: dict[str, type | tuple[type, ...]] = field(default_factory=dict)


# --- matchers on the request ---------------------------------------------------------


def _walk(value: Any) -> Iterator[tuple[str, Any]]:
    """(key, value) for every value under a dict key, at any depth, breadth-first, capped."""
    stack: deque[Any] = deque([value])
    seen = 0
    while stack and seen < MAX_WALK:
        node = stack.popleft()
        items = node.items() if isinstance(node, dict) else ()
        for key, child in items:
            seen += 1
            yield str(key), child
            if isinstance(child, dict | list):
                stack.append(child)
        if isinstance(node, list):
            for child in node:
                seen += 1
                if isinstance(child, dict | list):
                    stack.append(child)


def index_args(args: Any) -> dict[str, list[tuple[int, str, Any]]]:
    """Every (key, value) of the arguments by lower-cased key, with its place in the walk:
    built once per deferral (`Facts.arg_index`), looked up by every rule on arguments."""
    index: dict[str, list[tuple[int, str, Any]]] = {}
    for place, (key, value) in enumerate(_walk(args)):
        index.setdefault(key.lower(), []).append((place, key, value))
    return index


def _keyed(params: dict[str, Any], facts: Facts) -> Iterator[tuple[str, Any]]:
    """(key, value) under the rule's keys, in the walk's order (breadth-first)."""
    index = facts.arg_index
    hits = [hit for k in set(lowered(tuple(params["keys"]))) for hit in index.get(k, ())]
    if len(hits) > 1:
        hits.sort(key=lambda hit: hit[0])
    for _, key, value in hits:
        yield key, value


def _match_tool(params: dict[str, Any], facts: Facts) -> Values:
    pattern = first_match(facts.tool, params["match"])
    return None if pattern is None else {"tool": facts.tool, "pattern": pattern}


def _match_argument_over(params: dict[str, Any], facts: Facts) -> Values:
    threshold = params["threshold"]
    for key, value in _keyed(params, facts):
        if isinstance(value, int | float) and not isinstance(value, bool) and value > threshold:
            return {"key": key, "value": value, "threshold": threshold}
    return None


def _match_argument_value(params: dict[str, Any], facts: Facts) -> Values:
    values, like = params.get("values", []), params.get("like", [])
    for key, value in _keyed(params, facts):
        for item in value if isinstance(value, list) else [value]:
            if any(is_value(item, w) for w in values) or is_like(item, like):
                return {"key": key, "value": shown(item)}
    return None


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _domains_in(value: Any) -> Iterator[tuple[str, str]]:
    """(address as written, its domain) for e-mail addresses, URLs and bare domains."""
    for text in _strings(value):
        found = False
        for match in EMAIL.finditer(text):
            found = True
            yield match.group(0), match.group(1).lower()
        if found:
            continue
        host = urlsplit(text).hostname if "://" in text else text.strip()
        if host and "." in host and " " not in host:
            yield text, host.lower().rstrip(".")


def _match_external_address(params: dict[str, Any], facts: Facts) -> Values:
    internal = [d.lower() for d in params["internal_domains"]]
    for key, value in _keyed(params, facts):
        for address, domain in _domains_in(value):
            if not any(domain == d or domain.endswith("." + d) for d in internal):
                return {"key": key, "address": address, "domain": domain}
    return None


def _match_list_size(params: dict[str, Any], facts: Facts) -> Values:
    for key, value in _keyed(params, facts):
        if isinstance(value, list) and len(value) > params["over"]:
            return {"key": key, "count": len(value)}
    return None


def _match_label(params: dict[str, Any], facts: Facts) -> Values:
    value = facts.labels.get(params["key"])
    if value is not None and value in params["values"]:
        return {"key": params["key"], "value": value}
    return None


def _match_principal(params: dict[str, Any], facts: Facts) -> Values:
    pattern = first_match(facts.principal_id, params["match"])
    return None if pattern is None else {"principal": facts.principal_id, "pattern": pattern}


# --- matchers on the effect ----------------------------------------------------------


def _match_diff_field(params: dict[str, Any], facts: Facts) -> Values:
    fields_ = {f.lower() for f in params["fields"]}
    for path in facts.changed_paths:
        for part in path.lower().split("/"):
            if part in fields_:
                return {"path": path, "field": part}
    return None


def _match_diff_size(params: dict[str, Any], facts: Facts) -> Values:
    if facts.change_count > params["over"]:
        return {"count": facts.change_count}
    return None


def _by_the_policy(params: dict[str, Any], facts: Facts) -> Values:
    raise AssertionError("window kinds are matched by the policy with their counts")


NUMBER = (int, float)
VALUE_LIST = list  # of strings, numbers and booleans (checked by the loader)
EFFECT = ("path", "field", "old", "new")

KINDS: dict[str, Kind] = {
    "tool": Kind({"match": list}, ("tool", "pattern"), _match_tool),
    "argument_over": Kind(
        {"keys": list, "threshold": NUMBER}, ("key", "value", "threshold"), _match_argument_over
    ),
    "argument_value": Kind(
        {"keys": list},
        ("key", "value"),
        _match_argument_value,
        {"values": VALUE_LIST, "like": list},
    ),
    "external_address": Kind(
        {"keys": list, "internal_domains": list},
        ("key", "address", "domain"),
        _match_external_address,
    ),
    "list_size": Kind({"keys": list, "over": int}, ("key", "count"), _match_list_size),
    "label": Kind({"key": str, "values": list}, ("key", "value"), _match_label),
    "principal": Kind({"match": list}, ("principal", "pattern"), _match_principal),
    "diff_field": Kind({"fields": list}, ("path", "field"), _match_diff_field),
    "diff_size": Kind({"over": int}, ("count",), _match_diff_size),
    "field_value": Kind(
        {"fields": list},
        EFFECT,
        match_field_value,
        {"from": VALUE_LIST, "to": VALUE_LIST, "to_like": list},
    ),
    "number_lowered": Kind(
        {"fields": list}, EFFECT, match_number_lowered, {"to_at_most": NUMBER, "by_ratio": NUMBER}
    ),
    "number_raised": Kind(
        {"fields": list}, EFFECT, match_number_raised, {"to_at_least": NUMBER, "by_ratio": NUMBER}
    ),
    "list_shrunk": Kind(
        {"fields": list}, ("path", "field", "removed"), match_list_shrunk, {"by_at_least": int}
    ),
    "key_removed": Kind({"fields": list}, EFFECT, match_key_removed),
    "turned_off": Kind({"fields": list}, EFFECT, match_turned_off),
    "diff_removals": Kind({"over": int}, ("count",), match_diff_removals),
    # Over a time window (review/intake/policy_windows.py; policy.py's Rule.apply asks it).
    "window_count": Kind(
        {"per": list, "window": int},
        ("count", "who", "window"),
        _by_the_policy,
        {"at_least": int, "at_most": int},
    ),
    "window_sum": Kind(
        {"per": list, "window": int, "sum": str, "over": NUMBER},
        ("count", "who", "window", "sum", "total", "over"),
        _by_the_policy,
    ),
}

# Parameters that hold values to compare (strings, numbers, booleans); every other list
# holds strings.
VALUE_PARAMS = frozenset({"values", "from", "to"})


def check_params(kind: str, params: dict[str, Any]) -> str | None:
    """What is wrong with a rule's parameters beyond their types (None: nothing)."""
    for key, value in params.items():
        if not isinstance(value, list):
            continue
        allowed = (str, int, float, bool) if key in VALUE_PARAMS else (str,)
        if not all(isinstance(v, allowed) for v in value):
            kinds = "strings, numbers or booleans" if key in VALUE_PARAMS else "strings"
            return f"{key} must be a list of {kinds}"
    if kind == "field_value" and not {"from", "to", "to_like"} & set(params):
        return "field_value needs at least one of from, to, to_like"
    if kind == "argument_value" and not {"values", "like"} & set(params):
        return "argument_value needs values or like"
    ratio = params.get("by_ratio")
    if kind == "number_lowered" and ratio is not None and not 0 < ratio < 1:
        return "by_ratio must be between 0 and 1 for number_lowered (0.5: halved or more)"
    if kind == "number_raised" and ratio is not None and not ratio > 1:
        return "by_ratio must be more than 1 for number_raised (2: doubled or more)"
    if kind == "list_shrunk" and params.get("by_at_least", 1) < 1:
        return "by_at_least must be 1 or more"
    if kind in ("window_count", "window_sum"):
        return check_window_params(kind, params)
    return None
