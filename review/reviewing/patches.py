"""RFC 6902 patches between the action an agent asked for and the one a reviewer approved.

The `jsonpatch` package makes them: JSON Pointer escaping (`~0`, `~1`), arrays and
nested objects are where hand-written diffing goes wrong, and the agent (or an auditor)
can apply the patch with any RFC 6902 library and get exactly the approved action.
The audit log keeps the patch between the *redacted* actions, so a value the log must
not hold (COUNTERSIGN_AUDIT_REDACT) appears in it as its HMAC, as in `received`.
"""

from __future__ import annotations

from typing import Any

import jsonpatch

from review.audit.redaction import Redactor


def action_patch(original: dict[str, Any], approved: dict[str, Any]) -> list[dict[str, Any]]:
    """The operations that turn `original` into `approved`."""
    return list(jsonpatch.make_patch(original, approved).patch)


def audited_patch(
    redactor: Redactor, original: dict[str, Any], approved: dict[str, Any]
) -> list[dict[str, Any]]:
    """The patch as the audit log keeps it: between the actions as redacted for the log."""
    return action_patch(redactor.apply("action", original), redactor.apply("action", approved))


def edit_evidence(redactor: Redactor, deferral: Any) -> dict[str, Any]:
    """What a decision's audit event says about an edit (nothing when there was none)."""
    if getattr(deferral, "original_action_digest", None) is None:
        return {}
    return {
        "edited": True,
        "original_action_digest": deferral.original_action_digest,
        "action_patch": audited_patch(redactor, deferral.original_action, deferral.action),
    }


def patch_changes(original: dict[str, Any], patch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The patch as the pages show a diff's changes (review/intake/diffing.py's shape:
    op changed/added/removed, path, old, new), read by applying it one operation at a
    time to the original: what a reviewer sees of an edit someone made before them."""
    doc: Any = original
    changes: list[dict[str, Any]] = []
    for operation in patch:
        op, path = operation.get("op"), operation.get("path", "")
        old = _at(doc, path) if op in ("replace", "remove") else None
        if op == "move":
            old = _at(doc, operation.get("from", ""))
        doc = jsonpatch.apply_patch(doc, [operation])
        shown = {"replace": "changed", "add": "added", "remove": "removed"}.get(op, op)
        change: dict[str, Any] = {"op": shown, "path": path}
        if op != "add":
            change["old"] = old
        if op != "remove":
            change["new"] = _at(doc, path)
        changes.append(change)
    return changes


def _at(doc: Any, path: str) -> Any:
    try:
        return jsonpatch.JsonPointer(path).resolve(doc)
    except (jsonpatch.JsonPointerException, KeyError, IndexError, TypeError):
        return None
