"""What a gate checks before running anything, and how a decorated call becomes an action.

Shared by the sync and the async client: nothing here does I/O.
"""

from __future__ import annotations

import inspect
import json
import string
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from countersign_client.canonical import action_digest, digest_of
from countersign_client.errors import (
    ENDINGS,
    ActionMismatch,
    AlreadyExecuted,
    ApprovalLapsed,
    NotApproved,
    ReceiptRefused,
)
from countersign_client.receipts import InvalidReceipt, verify_receipt
from countersign_client.resources import Approval, Deferral

MAX_FAILURE_TEXT = 2000


def ensure_runnable(
    deferral: Deferral, tool: str, args: Any, now: datetime | None = None
) -> Approval:
    """The deferral as an Approval when it permits running `tool` with `args` now.

    Raises, before anything runs: Rejected, Expired, Cancelled or Killed (its ending, with
    the decision's reason); NotApproved when it is still pending or in review;
    AlreadyExecuted when an execution was reported for it; ActionMismatch when the
    approved action is not this one (an edited approval must come from this one, and
    the action handed over must be the one whose digest was approved); ApprovalLapsed
    when `decision.valid_until` has passed (or is missing).
    """
    return runnable(deferral, tool, action_digest(tool, args), now)


def runnable(
    deferral: Deferral,
    tool: str,
    requested_digest: str,
    now: datetime | None = None,
    jwks: Mapping[str, Any] | None = None,
) -> Approval:
    """As ensure_runnable, with the requested action's digest computed already; given the
    service's JWKS, also ReceiptRefused unless the approval's receipt verifies with it."""
    decision = deferral.decision
    reason = decision.reason if decision else None
    what = f"{tool} ({deferral.id})"
    if deferral.status != "approved":
        ending = ENDINGS.get(deferral.status)
        if ending is None:
            raise NotApproved(f"{what} is still {deferral.status}", deferral)
        said = f": {reason}" if reason else ""
        raise ending(f"{what} was {deferral.status}{said}", deferral, reason)
    if deferral.execution is not None:
        raise AlreadyExecuted(f"{what} was executed already", deferral, reason)
    approved = deferral.action
    if approved.get("tool") != tool:
        raise ActionMismatch(f"{what} approves {approved.get('tool')!r}", deferral, reason)
    try:
        handed_over = digest_of(approved)
    except (TypeError, ValueError):
        handed_over = None
    if handed_over != deferral.action_digest:
        raise ActionMismatch(
            f"{what}: the approved action does not match its digest", deferral, reason
        )
    asked = decision.original_action_digest if decision and decision.edited else None
    if (asked or deferral.action_digest) != requested_digest:
        raise ActionMismatch(
            f"{what}: the approval is for another action than this one", deferral, reason
        )
    valid_until = decision.valid_until if decision else None
    now = now or datetime.now(UTC)
    if valid_until is None or now >= valid_until:
        raise ApprovalLapsed(f"{what}: the approval ran out at {valid_until}", deferral, reason)
    if jwks is not None:
        receipt = decision.receipt if decision else None
        try:
            verify_receipt(receipt, jwks, now=now.timestamp(), action_digest=deferral.action_digest)
        except InvalidReceipt as exc:
            raise ReceiptRefused(f"{what}: the receipt does not hold: {exc}", deferral) from None
    return Approval(deferral.raw)


def failure_text(error: BaseException) -> str:
    """What a failed execution reports: the exception's type and text."""
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= MAX_FAILURE_TEXT else text[: MAX_FAILURE_TEXT - 1] + "…"


def reportable(result: Any) -> Any:
    """`result` when it is JSON (it goes into the report), else None."""
    try:
        json.dumps(result, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return None
    return result


class CallShape:
    """A decorated function's signature: a call's arguments as an action's args and back.

    Every parameter is an arg (defaults filled in), except the names in `exclude` and a
    first parameter called `self` or `cls`; those are passed through as they were given.
    """

    def __init__(self, fn: Callable[..., Any], summary: str, exclude: Iterable[str] = ()):
        self.name = getattr(fn, "__qualname__", repr(fn))
        self.signature = inspect.signature(fn)
        params = list(self.signature.parameters.values())
        self.exclude = set(exclude)
        if params and params[0].name in ("self", "cls"):
            self.exclude.add(params[0].name)
        self.params = params
        self.summary = summary
        named = {p.name for p in params} - self.exclude
        for _, field_name, _, _ in string.Formatter().parse(summary):
            if field_name is None:
                continue
            base = field_name.split(".")[0].split("[")[0]
            if base not in named:
                raise TypeError(f"summary names {{{field_name}}}, not an argument of {self.name}")

    def bind(self, positional: tuple, keywords: dict[str, Any]) -> tuple[dict, dict]:
        """The call's args (JSON, for the action) and the values passed through as given."""
        bound = self.signature.bind(*positional, **keywords)
        bound.apply_defaults()
        args = {k: v for k, v in bound.arguments.items() if k not in self.exclude}
        kept = {k: v for k, v in bound.arguments.items() if k in self.exclude}
        try:
            json.dumps(args, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"{self.name}'s arguments must be JSON to be approved ({exc}); "
                "pass the others through with exclude=(...)"
            ) from None
        return args, kept

    def summary_of(self, args: dict[str, Any]) -> str:
        return self.summary.format_map(args)

    def arguments(self, approved: Approval, kept: dict[str, Any]) -> tuple[list, dict]:
        """How to call the function with the approved args (ActionMismatch if they do not fit)."""
        given = approved.args
        if not isinstance(given, dict):
            raise ActionMismatch(f"{self.name}: the approved args are not an object", approved)
        values = {**given, **kept}
        positional: list[Any] = []
        keywords: dict[str, Any] = {}
        try:
            for p in self.params:
                if p.kind is p.VAR_POSITIONAL:
                    positional.extend(values.pop(p.name, ()))
                elif p.kind is p.VAR_KEYWORD:
                    keywords.update(values.pop(p.name, {}))
                elif p.name in values:
                    value = values.pop(p.name)
                    if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                        positional.append(value)
                    else:
                        keywords[p.name] = value
                elif p.default is not p.empty and p.kind is not p.KEYWORD_ONLY:
                    positional.append(p.default)
            if values:
                raise TypeError(f"unexpected {sorted(values)}")
            self.signature.bind(*positional, **keywords)
        except (TypeError, ValueError) as exc:
            raise ActionMismatch(
                f"{self.name}: the approved args do not fit its signature ({exc})", approved
            ) from None
        return positional, keywords


def option_value(value: Any, args: dict[str, Any]) -> Any:
    """A decorator option: given as it is, or computed from the call's args by a callable."""
    return value(args) if callable(value) else value
