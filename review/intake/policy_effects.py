"""Effect rules: what a change does, read from the stored before/after diff.

The diff's changes (review/intake/diffing.py) become `Effect`s: one per change, plus one
per value inside an object or array that a change added or removed whole (a statement
added to a policy brings its `"Principal": "*"` with it). A rule's `fields` are globs
(`*retention*`), compared case-insensitively with every key on an effect's path, so
`logging` matches `/bucket/logging/enabled`; array indexes are not keys. The matchers
here are registered as rule kinds in review/intake/policy_rules.py.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from review.intake.policy_globs import any_of, folded, lowered

if TYPE_CHECKING:
    from review.intake.policy import Facts

NUMBER_TEXT = re.compile(r"^\s*-?\d{1,15}(\.\d{1,15})?\s*$")
MAX_EFFECTS = 20_000  # effects looked at per deferral; the diff keeps a bounded number
# What `turned_off` reads as on and as off, besides true and false (case-insensitive).
ON_WORDS = frozenset({"true", "on", "yes", "enabled", "enable", "active", "required", "enforced"})
OFF_WORDS = frozenset(
    {"false", "off", "no", "disabled", "disable", "inactive", "suspended", "optional", "none", ""}
)


class _Missing:
    def __repr__(self) -> str:
        return "(none)"


MISSING: Any = _Missing()  # an effect's old value when it was added, new when removed

Values = dict[str, Any] | None  # a matcher's placeholders, or None: no match


@dataclass(frozen=True)
class Effect:
    path: str
    keys: tuple[str, ...]  # the path's object keys, lower-cased (array indexes left out)
    old: Any  # MISSING: the value did not exist before
    new: Any  # MISSING: it does not exist after


def _segments(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def effects_of(changes: Iterable[dict[str, Any]]) -> list[Effect]:
    """Every change of the diff as an Effect, then the values inside whole added or
    removed objects and arrays (breadth-first, at most MAX_EFFECTS in all)."""
    found: list[Effect] = []
    inner: deque[tuple[str, tuple[str, ...], Any, bool]] = deque()
    for change in changes:
        op, path = change.get("op"), str(change.get("path", ""))
        keys = tuple(p.lower() for p in _segments(path) if not p.isdigit())
        old = MISSING if op == "added" else change.get("old")
        new = MISSING if op == "removed" else change.get("new")
        found.append(Effect(path, keys, old, new))
        if op != "changed":  # added, removed, type_changed: whatever a container held
            if isinstance(old, dict | list):
                inner.append((path, keys, old, True))
            if isinstance(new, dict | list):
                inner.append((path, keys, new, False))
    while inner and len(found) < MAX_EFFECTS:
        path, keys, node, was_removed = inner.popleft()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in items:
            child_keys = keys + (str(key).lower(),) if isinstance(node, dict) else keys
            child_path = f"{path}/{_escape(str(key))}"
            old, new = (child, MISSING) if was_removed else (MISSING, child)
            found.append(Effect(child_path, child_keys, old, new))
            if isinstance(child, dict | list):
                inner.append((child_path, child_keys, child, was_removed))
    return found


def _key_matching(patterns: list[str], keys: tuple[str, ...]) -> str | None:
    """The first of `keys` (lower-cased) that one of the globs matches, case-insensitively."""
    matches = any_of(lowered(tuple(patterns))).match
    for key in keys:
        if matches(key):
            return key
    return None


def shown(value: Any) -> Any:
    """A value as a detail quotes it: text as it is, numbers as numbers, the rest as JSON."""
    if value is MISSING:
        return "(none)"
    if isinstance(value, str) or (isinstance(value, int | float) and not isinstance(value, bool)):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))[:200]


def is_value(value: Any, wanted: Any) -> bool:
    """JSON equality, with text compared case-insensitively and true never equal to 1."""
    if isinstance(wanted, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(wanted, bool) and value is wanted
    if isinstance(wanted, str):
        return isinstance(value, str) and value.strip().casefold() == wanted.casefold()
    return isinstance(value, int | float) and value == wanted


def is_like(value: Any, patterns: list[str]) -> bool:
    return (
        isinstance(value, str)
        and bool(patterns)
        and any_of(folded(tuple(patterns))).match(value.strip().casefold()) is not None
    )


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str) and NUMBER_TEXT.match(value):
        return float(value) if "." in value else int(value)
    return None


def _effect_values(e: Effect, key: str) -> dict[str, Any]:
    return {"path": e.path or "/", "field": key, "old": shown(e.old), "new": shown(e.new)}


# --- matchers ------------------------------------------------------------------------


def match_field_value(params: dict[str, Any], facts: Facts) -> Values:
    before = params.get("from")
    after, after_like = params.get("to"), params.get("to_like")
    for e in facts.effects:
        key = _key_matching(params["fields"], e.keys)
        if key is None:
            continue
        if before is not None and not any(is_value(e.old, w) for w in before):
            continue
        wants_new = after is not None or after_like is not None
        if wants_new and not (
            any(is_value(e.new, w) for w in after or ()) or is_like(e.new, after_like or [])
        ):
            continue
        if not wants_new and is_value(e.new, e.old):
            continue
        return _effect_values(e, key)
    return None


def match_number_lowered(params: dict[str, Any], facts: Facts) -> Values:
    at_most, ratio = params.get("to_at_most"), params.get("by_ratio")
    for e in facts.effects:
        old, new = _number(e.old), _number(e.new)
        if old is None or new is None or not new < old:
            continue
        if at_most is not None and not new <= at_most:
            continue
        if ratio is not None and not (old > 0 and new <= old * ratio):
            continue
        key = _key_matching(params["fields"], e.keys)
        if key is not None:
            return _effect_values(e, key)
    return None


def match_number_raised(params: dict[str, Any], facts: Facts) -> Values:
    at_least, ratio = params.get("to_at_least"), params.get("by_ratio")
    for e in facts.effects:
        old, new = _number(e.old), _number(e.new)
        if old is None or new is None or not new > old:
            continue
        if at_least is not None and not new >= at_least:
            continue
        if ratio is not None and not (old <= 0 or new >= old * ratio):
            continue
        key = _key_matching(params["fields"], e.keys)
        if key is not None:
            return _effect_values(e, key)
    return None


def match_list_shrunk(params: dict[str, Any], facts: Facts) -> Values:
    """Lists are diffed position by position, so a list that lost n items shows n removed
    indexes at its end; a list removed whole lost all of them."""
    lost: dict[str, int] = {}
    for change in facts.changes:
        path, op, old = str(change.get("path", "")), change.get("op"), change.get("old")
        parent, _, last = path.rpartition("/")
        if op == "removed" and last.isdigit():
            lost[parent] = lost.get(parent, 0) + 1
        elif op in ("removed", "type_changed") and isinstance(old, list) and old:
            lost[path] = lost.get(path, 0) + len(old)
    for path, count in lost.items():
        if count < params.get("by_at_least", 1):
            continue
        keys = tuple(p.lower() for p in _segments(path) if not p.isdigit())
        key = _key_matching(params["fields"], keys)
        if key is not None:
            return {"path": path or "/", "field": key, "removed": count}
    return None


def match_key_removed(params: dict[str, Any], facts: Facts) -> Values:
    for e in facts.effects:
        if e.old is MISSING or e.old is None or not (e.new is MISSING or e.new is None):
            continue
        key = _key_matching(params["fields"], e.keys)
        if key is not None:
            return _effect_values(e, key)
    return None


def _switch(value: Any) -> bool | None:
    """True for on, False for off (absent and null included), None for neither."""
    if value is MISSING or value is None or value is False:
        return False
    if value is True:
        return True
    if isinstance(value, str):
        word = value.strip().casefold()
        return True if word in ON_WORDS else False if word in OFF_WORDS else None
    return None


def match_turned_off(params: dict[str, Any], facts: Facts) -> Values:
    for e in facts.effects:
        if e.old is MISSING or _switch(e.old) is not True or _switch(e.new) is not False:
            continue
        key = _key_matching(params["fields"], e.keys)
        if key is not None:
            return _effect_values(e, key)
    return None


def match_diff_removals(params: dict[str, Any], facts: Facts) -> Values:
    count = 0
    for change in facts.changes:
        if change.get("op") == "removed":
            old = change.get("old")
            count += len(old) if isinstance(old, list) else 1
    if count > params["over"]:
        return {"count": count}
    return None
