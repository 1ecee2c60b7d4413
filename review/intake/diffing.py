"""The before/after diff a reviewer reads, computed once at intake with deepdiff and
never at render.

`before` and `after` are parsed JSON, handed to deepdiff in a form that keeps it on
its bounded, compile-free paths:

- a JSON array becomes a `_Positions` mapping (index as a string key -> item), cut at
  the comparison budget's number of items, so lists are compared position by position
  (no order-insensitive matching, which is quadratic) and deepdiff never turns a list
  index into a Python-syntax path element. Left as a list, each index it visits is
  checked with `ast.literal_eval`, that is `compile()`,
  which CPython 3.11 can break when threads compile at once ("AST constructor recursion
  depth mismatch", the rare 500 under load);
- a string with a newline becomes a `_Text`: its digest, with no newline in it, so
  deepdiff never runs its own difflib over the pair (unbounded: a 1 MiB body of short
  repeated lines held a request for minutes). A changed long text gets its line diff
  from review/intake/text_diff.py instead, bounded by the same deadline.

deepdiff stops after a number of comparisons, a deadline cuts the walk short (its
`exclude_obj_callback` looks at the clock), and at most `max_changes` changes are kept.
A diff that hit any bound is stored with `truncated: true` and a note that says why.

Stored form (JSON):
    {"changes": [{"op": "changed"|"added"|"removed"|"type_changed",
                  "path": "/json/pointer", "old": ..., "new": ...,
                  # only for a changed long text (both strings, multi-line or > 80 chars):
                  "lines": [[tag, text], ...],  # tag "@" hunk, "-" old, "+" new, " " same
                  "lines_truncated": bool, "lines_note": str|null}, ...],
     "count": <changes found>, "truncated": bool, "note": str|null}
A change stored before line diffs were computed at intake has no "lines": pages show
its old and new values as they are.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

from deepdiff import DeepDiff

from review.intake.text_diff import DIFF_SHOWN_CHARS, DIFF_SHOWN_LINES, is_long_text, line_changes

# deepdiff logs a warning when max_diffs is reached; we report that in the diff itself.
logging.getLogger("deepdiff").setLevel(logging.ERROR)

ABSENT = object()
OPS = {
    "values_changed": "changed",
    "type_changes": "type_changed",
    "dictionary_item_added": "added",
    "dictionary_item_removed": "removed",
}
COMPARISONS_PER_CHANGE = 50  # deepdiff's work budget, in comparisons, per change kept


def json_pointer(parts: list[Any]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


class _Positions(dict):
    """A JSON array as deepdiff sees it: each item under its index, as a string key."""


class _Text(str):
    """A multi-line string as deepdiff sees it: a digest with no newline; `.text` is it."""

    text: str

    def __new__(cls, text: str) -> _Text:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        made = super().__new__(cls, f"text:sha256:{digest}")
        made.text = text
        return made


_LEAVES = (int, float, bool, type(None))


class _Conversion:
    """Turns parsed JSON into what deepdiff is given; arrays past `limit` items are cut
    (the comparison budget could not reach their tail anyway), and `cut` says so."""

    def __init__(self, limit: int):
        self.limit = limit
        self.cut = False

    def __call__(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {key: self(item) for key, item in value.items()}
        if isinstance(value, list):
            if len(value) > self.limit:
                self.cut, value = True, value[: self.limit]
            items = [item if type(item) in _LEAVES else self(item) for item in value]
            return _Positions(zip(map(str, range(len(items))), items, strict=True))
        if isinstance(value, str) and "\n" in value:
            return _Text(value)
        return value


def _restored(value: Any) -> Any:
    """The JSON value behind what deepdiff reported (notpresent and the like: None)."""
    if isinstance(value, _Text):
        return value.text
    if isinstance(value, _Positions):
        return [_restored(item) for item in value.values()]
    if isinstance(value, dict):
        return {key: _restored(item) for key, item in value.items()}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return None


def compute_diff(before: Any, after: Any, *, max_changes: int, max_ms: int) -> dict[str, Any]:
    if before is ABSENT and after is ABSENT:
        return {"changes": [], "count": 0, "truncated": False, "note": "no before/after given"}
    if before is ABSENT or after is ABSENT:
        op, value = ("added", after) if before is ABSENT else ("removed", before)
        change = {"op": op, "path": "", "old": None if op == "added" else value}
        change["new"] = value if op == "added" else None
        note = "only the state after was given" if op == "added" else "only the state before"
        return {"changes": [change], "count": 1, "truncated": False, "note": note}

    deadline = time.monotonic() + max_ms / 1000
    plain = plain_changes(before, after, max_changes)
    if plain is not None:  # most states are a few nested fields: deepdiff is not needed
        return _finished(plain, len(plain), [], deadline, max_changes)
    timed_out = False

    def past_deadline(_obj: Any, _path: str) -> bool:
        nonlocal timed_out
        if not timed_out and time.monotonic() > deadline:
            timed_out = True
        return timed_out

    budget = max(1000, max_changes * COMPARISONS_PER_CHANGE)
    convert = _Conversion(limit=budget)
    result = DeepDiff(
        convert(before),
        convert(after),
        view="tree",
        ignore_order=False,
        verbose_level=2,
        max_diffs=budget,
        # Always say which items changed, never "the whole list changed" (its value can be
        # a megabyte the card would then print).
        threshold_to_diff_deeper=0,
        exclude_obj_callback=past_deadline,
        # Never used (multiprocessing is off), but left as None deepdiff asks the OS for
        # the CPU count on every call: a system call per intake.
        multiprocessing_workers=1,
        # deepdiff passes over keys starting with "__" by default ("private" attributes of
        # Python objects): in an agent's JSON state they are data like any other, and a
        # change under one must show on the card.
        ignore_private_variables=False,
    )
    changes: list[dict[str, Any]] = []
    count = 0
    for kind, levels in result.items():
        op = OPS.get(kind)
        if op is None:
            continue
        for level in levels:
            count += 1
            if len(changes) < max_changes:
                changes.append(_change(op, level))
    notes = []
    if convert.cut:
        notes.append(f"lists compared on their first {budget} items")
    if result.get_stats().get("MAX DIFF LIMIT REACHED"):
        notes.append("the comparison budget ran out")
    if timed_out:
        notes.append(f"the {max_ms} ms time budget ran out")
    return _finished(changes, count, notes, deadline, max_changes)


def _finished(
    changes: list[dict[str, Any]], count: int, notes: list[str], deadline: float, max_changes: int
) -> dict[str, Any]:
    """The stored form: changes in path order, long texts' line diffs, the notes."""
    changes.sort(key=lambda c: c["path"])
    lines_left, chars_left = DIFF_SHOWN_LINES, DIFF_SHOWN_CHARS
    for change in changes:
        if change["op"] == "changed" and is_long_text(change["old"], change["new"]):
            change.update(
                line_changes(change["old"], change["new"], deadline, lines_left, chars_left)
            )
            lines_left -= len(change["lines"])
            chars_left -= sum(len(text) for _, text in change["lines"])
    if count > max_changes:
        notes.append(f"showing {max_changes} of {count} changes")
    truncated = bool(notes)
    note = ("diff truncated: " + "; ".join(notes)) if truncated else None
    return {"changes": changes, "count": count, "truncated": truncated, "note": note}


def _change(op: str, level: Any) -> dict[str, Any]:
    old = None if op == "added" else _restored(level.t1)
    new = None if op == "removed" else _restored(level.t2)
    if op == "type_changed" and isinstance(old, str) and isinstance(new, str):
        op = "changed"  # a text and a multi-line text: deepdiff saw str and _Text
    return {
        "op": op,
        "path": json_pointer(level.path(output_format="list")),
        "old": old,
        "new": new,
    }


# --- plain documents: objects of scalars, compared without deepdiff ----------------------

PLAIN_MAX_NODES = 200  # a bigger document goes to deepdiff, with its budgets and deadline


def plain_changes(before: Any, after: Any, max_changes: int) -> list[dict[str, Any]] | None:
    """The changes between two objects made of objects, numbers, booleans, nulls and
    one-line strings, as deepdiff reports them (same ops, paths, old and new values);
    None when either holds a list or a multi-line text, is
    bigger than PLAIN_MAX_NODES, or has more than `max_changes` changes: deepdiff judges
    those, with its bounds.

    deepdiff spent a third of a millisecond of CPU on the two three-field states of a
    typical deferral (most of the diff's share of intake); this walk spends a hundredth.
    """
    if not (isinstance(before, dict) and isinstance(after, dict)):
        return None
    if _plain_size(before, PLAIN_MAX_NODES) < 0 or _plain_size(after, PLAIN_MAX_NODES) < 0:
        return None
    changes: list[dict[str, Any]] = []
    _compare(before, after, [], changes)
    return changes if len(changes) <= max_changes else None


def _plain_size(value: Any, left: int) -> int:
    """Nodes left of `left` after counting `value`'s; negative: not plain, or too big."""
    for item in value.values():
        left -= 1
        if left < 0:
            return -1
        if isinstance(item, dict):
            left = _plain_size(item, left)
            if left < 0:
                return -1
        elif isinstance(item, list) or (isinstance(item, str) and "\n" in item):
            return -1
    return left


def _compare(old: dict, new: dict, at: list[str], changes: list[dict[str, Any]]) -> None:
    for key, was in old.items():
        path = [*at, key]
        if key not in new:
            changes.append({"op": "removed", "path": json_pointer(path), "old": was, "new": None})
            continue
        now = new[key]
        if was is now:
            continue
        if type(was) is not type(now):  # deepdiff: 1 and 1.0, or 1 and true, differ in type
            changes.append(
                {"op": "type_changed", "path": json_pointer(path), "old": was, "new": now}
            )
        elif isinstance(was, dict):
            _compare(was, now, path, changes)
        elif was != now:
            changes.append({"op": "changed", "path": json_pointer(path), "old": was, "new": now})
    for key, now in new.items():
        if key not in old:
            changes.append(
                {"op": "added", "path": json_pointer([*at, key]), "old": None, "new": now}
            )
