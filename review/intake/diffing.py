"""The before/after diff a reviewer reads, computed once at intake with deepdiff.

Bounded on purpose: lists are compared position by position (no order-insensitive
matching, which is quadratic), deepdiff stops after a number of comparisons, a
deadline cuts the walk short, and at most `max_changes` changes are kept. A diff
that hit any bound is stored with `truncated: true` and a note that says why.

Stored form (JSON):
    {"changes": [{"op": "changed"|"added"|"removed"|"type_changed",
                  "path": "/json/pointer", "old": ..., "new": ...}, ...],
     "count": <changes found>, "truncated": bool, "note": str|null}
"""

from __future__ import annotations

import logging
import time
from typing import Any

from deepdiff import DeepDiff

# deepdiff logs a warning when max_diffs is reached; we report that in the diff itself.
logging.getLogger("deepdiff").setLevel(logging.ERROR)

ABSENT = object()
OPS = {
    "values_changed": "changed",
    "type_changes": "type_changed",
    "dictionary_item_added": "added",
    "iterable_item_added": "added",
    "dictionary_item_removed": "removed",
    "iterable_item_removed": "removed",
}
COMPARISONS_PER_CHANGE = 50  # deepdiff's work budget, in comparisons, per change kept


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
    timed_out = False

    def past_deadline(_obj: Any, _path: str) -> bool:
        nonlocal timed_out
        if not timed_out and time.monotonic() > deadline:
            timed_out = True
        return timed_out

    result = DeepDiff(
        before,
        after,
        view="tree",
        ignore_order=False,
        zip_ordered_iterables=True,  # positional: difflib on long lists is unbounded
        verbose_level=2,
        max_diffs=max(1000, max_changes * COMPARISONS_PER_CHANGE),
        exclude_obj_callback=past_deadline,
        # Never used (multiprocessing is off), but left as None deepdiff asks the OS for
        # the CPU count on every call: a system call per intake.
        multiprocessing_workers=1,
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
                changes.append(
                    {
                        "op": op,
                        "path": json_pointer(level.path(output_format="list")),
                        "old": None if op == "added" else level.t1,
                        "new": None if op == "removed" else level.t2,
                    }
                )
    changes.sort(key=lambda c: c["path"])
    notes = []
    if result.get_stats().get("MAX DIFF LIMIT REACHED"):
        notes.append("the comparison budget ran out")
    if timed_out:
        notes.append(f"the {max_ms} ms time budget ran out")
    if count > max_changes:
        notes.append(f"showing {max_changes} of {count} changes")
    truncated = bool(notes)
    note = ("diff truncated: " + "; ".join(notes)) if truncated else None
    return {"changes": changes, "count": count, "truncated": truncated, "note": note}
