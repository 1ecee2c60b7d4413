"""Redaction: values the audit log must prove without keeping (COUNTERSIGN_AUDIT_REDACT).

A configured path (`action.args.card_number`, `**.password`; `*` is one key or list
index, `**` any depth) names values that the audit log stores as
`redacted:hmac-sha256:<hex>`: an HMAC-SHA256, under a key derived from SECRET_KEY, of
the value's RFC 8785 canonical JSON. Whoever holds the value and the key can show it
is the one that was approved; the log and its exports never hold the value itself.
The deferral row keeps the value, so reviewers still see what they decide on.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import rfc8785

PREFIX = "redacted:hmac-sha256:"
State = tuple[tuple[str, ...], int]
States = tuple[State, ...]


class Redactor:
    def __init__(self, secret_key: str, paths: tuple[str, ...]):
        self._key = hmac.new(
            secret_key.encode(), b"countersign audit redaction", hashlib.sha256
        ).digest()
        self._patterns = [tuple(p.split(".")) for p in paths]
        self._start = self._closure(tuple((p, 0) for p in self._patterns))
        # (states, key) -> states: a document's keys repeat, so most steps are looked up.
        self._steps: dict[tuple[States, str], States] = {}
        self._ends: dict[States, bool] = {}

    def digest(self, value: Any) -> str:
        return PREFIX + hmac.new(self._key, rfc8785.dumps(value), hashlib.sha256).hexdigest()

    def apply(self, root: str, value: Any) -> Any:
        """`value` (found under the name `root`) with every configured path replaced."""
        if not self._patterns:
            return value
        return self._walk(value, self._advance(self._start, root))

    def _walk(self, value: Any, states: States) -> Any:
        if not states:
            return value
        if self._matched(states):
            return self.digest(value)
        if isinstance(value, dict):
            return {k: self._walk(v, self._advance(states, str(k))) for k, v in value.items()}
        if isinstance(value, list):
            return [self._walk(v, self._advance(states, str(n))) for n, v in enumerate(value)]
        return value

    def _matched(self, states: States) -> bool:
        """Whether some pattern ends here (memoised: a walk asks at every node)."""
        matched = self._ends.get(states)
        if matched is None:
            matched = self._ends[states] = any(i == len(p) for p, i in states)
        return matched

    @staticmethod
    def _closure(states: tuple[State, ...] | list[State]) -> States:
        """`**` may match nothing: add the state after it, as often as it applies."""
        out: list[State] = []
        todo = list(states)
        while todo:
            pattern, i = todo.pop()
            if (pattern, i) in out:
                continue
            out.append((pattern, i))
            if i < len(pattern) and pattern[i] == "**":
                todo.append((pattern, i + 1))
        return tuple(out)

    def _advance(self, states: States, key: str) -> States:
        step = self._steps.get((states, key))
        if step is not None:
            return step
        moved = []
        for pattern, i in states:
            if i >= len(pattern):
                continue
            if pattern[i] == "**":
                moved.append((pattern, i))  # it swallows this key and may go on
            elif pattern[i] in ("*", key):
                moved.append((pattern, i + 1))
        step = self._closure(moved)
        if len(self._steps) < 10000:  # keys an agent invents must not grow it for ever
            self._steps[(states, key)] = step
        return step
