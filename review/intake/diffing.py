"""The before/after diff a reviewer reads, computed once at intake and never at render.

`before` and `after` are parsed JSON (dicts, lists, strings, numbers, booleans, null),
so the walk is ours, iterative and small, rather than deepdiff's: deepdiff builds a
Python-syntax path string for every node it visits and checks each list index in it
with `ast.literal_eval`, that is `compile()`, which CPython 3.11 can break when threads
compile at once ("AST constructor recursion depth mismatch", a 500 under load); and it
runs an uninterruptible difflib over every pair of multi-line strings (a 1 MiB body of
short repeated lines held a request for minutes). Nothing here compiles or parses paths.

Bounded on purpose: lists are compared position by position (no order-insensitive
matching, which is quadratic); the walk stops after a number of comparisons or at a
deadline (checked every few hundred comparisons), and never queues more pairs than the
comparisons left could visit; at most `max_changes` changes are kept. A diff that hit any bound is
stored with `truncated: true` and a note that says why. A long text that changed gets
its line diff here too, bounded by the same deadline and, over the whole diff, in lines
and characters (see review/intake/text_diff.py), so a page renders a bounded diff.

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

import time
from typing import Any

from review.intake.text_diff import DIFF_SHOWN_CHARS, DIFF_SHOWN_LINES, is_long_text, line_changes

ABSENT = object()
COMPARISONS_PER_CHANGE = 50  # the walk's work budget, in comparisons, per change kept
CLOCK_EVERY = 256  # comparisons between two looks at the clock


def json_pointer(parts: list[Any]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


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
    walk = _Walk(max_changes, max(1000, max_changes * COMPARISONS_PER_CHANGE), deadline)
    walk.run(before, after)
    changes = sorted(walk.kept, key=lambda c: c["path"])
    lines_left, chars_left = DIFF_SHOWN_LINES, DIFF_SHOWN_CHARS
    for change in changes:
        if change["op"] == "changed" and is_long_text(change["old"], change["new"]):
            change.update(
                line_changes(change["old"], change["new"], deadline, lines_left, chars_left)
            )
            lines_left -= len(change["lines"])
            chars_left -= sum(len(text) for _, text in change["lines"])
    notes = []
    if walk.out_of_comparisons:
        notes.append("the comparison budget ran out")
    if walk.out_of_time:
        notes.append(f"the {max_ms} ms time budget ran out")
    if walk.count > max_changes:
        notes.append(f"showing {max_changes} of {walk.count} changes")
    truncated = bool(notes)
    note = ("diff truncated: " + "; ".join(notes)) if truncated else None
    return {"changes": changes, "count": walk.count, "truncated": truncated, "note": note}


class _Walk:
    """Depth first, in document order, with an explicit stack (no recursion).

    A place in the tree is a linked pair (parent place, key), turned into a JSON pointer
    only for the changes kept, so deep trees cost nothing per node visited.
    """

    def __init__(self, max_changes: int, max_comparisons: int, deadline: float):
        self.max_changes = max_changes
        self.max_comparisons = max_comparisons
        self.deadline = deadline
        self.kept: list[dict[str, Any]] = []
        self.count = 0
        self.comparisons = 0
        self.out_of_comparisons = False
        self.out_of_time = False

    def run(self, before: Any, after: Any) -> None:
        stack: list[tuple[Any, Any, Any]] = [(before, after, None)]
        while stack:
            old, new, place = stack.pop()
            if not self._may_compare():
                return
            if old is new:
                continue
            if type(old) is not type(new):  # 1 and 1.0, 1 and true: == would hide these
                self._record("type_changed", place, old, new)
            elif isinstance(old, dict):
                if not self._dict(old, new, place, stack):
                    return
            elif isinstance(old, list):
                if not self._list(old, new, place, stack):
                    return
            elif old != new:
                self._record("changed", place, old, new)

    def _dict(self, old: dict, new: dict, place: Any, stack: list) -> bool:
        children = []
        for key, value in old.items():
            if key in new:
                children.append((value, new[key], (place, key)))
            elif self._may_compare():
                self._record("removed", (place, key), value, None)
            else:
                return False
        for key, value in new.items():
            if key not in old:
                if not self._may_compare():
                    return False
                self._record("added", (place, key), None, value)
        self._push(stack, children[::-1])
        return True

    def _list(self, old: list, new: list, place: Any, stack: list) -> bool:
        common = min(len(old), len(new))
        for index in range(common, len(old)):
            if not self._may_compare():
                return False
            self._record("removed", (place, index), old[index], None)
        for index in range(common, len(new)):
            if not self._may_compare():
                return False
            self._record("added", (place, index), None, new[index])
        visited = min(common, self._room())
        if visited < common:
            self.out_of_comparisons = True
        stack.extend((old[i], new[i], (place, i)) for i in reversed(range(visited)))
        return True

    def _push(self, stack: list, pairs: list) -> None:
        room = self._room()
        if len(pairs) > room:
            self.out_of_comparisons = True
            pairs = pairs[len(pairs) - room :]  # pairs come last first: keep the first ones
        stack.extend(pairs)

    def _room(self) -> int:
        """How many more pairs the budget can visit: each visit costs a comparison."""
        return max(0, self.max_comparisons - self.comparisons)

    def _may_compare(self) -> bool:
        self.comparisons += 1
        if self.comparisons > self.max_comparisons:
            self.out_of_comparisons = True
            return False
        if self.comparisons % CLOCK_EVERY == 0 and time.monotonic() > self.deadline:
            self.out_of_time = True
            return False
        return True

    def _record(self, op: str, place: Any, old: Any, new: Any) -> None:
        self.count += 1
        if len(self.kept) < self.max_changes:
            self.kept.append({"op": op, "path": _pointer(place), "old": old, "new": new})


def _pointer(place: Any) -> str:
    parts = []
    while place is not None:
        place, key = place
        parts.append(key)
    return json_pointer(parts[::-1])
