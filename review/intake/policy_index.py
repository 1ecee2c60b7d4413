"""Which rules could match a deferral, found without asking every rule.

Most rules of a big policy match nothing in a given deferral: a rule on arguments needs
one of its keys among the arguments, one on the diff's effect a key its `fields` match
among the effects' keys, a label rule its label, a tool or principal rule a glob that
matches the tool or the principal. So the rules are indexed by what each one needs, and
a deferral's candidates are the union of the entries its arguments, effects, labels,
tool and principal name, the parts of its changed paths (a `diff_field` rule needs one
of its fields among them), plus the rules that need nothing in particular (diff size,
windows...). Candidates are then judged in file order by `Rule.apply`,
exactly as before, so scores, factors, details and outcomes are unchanged: the index
only passes over rules that could not have matched.

Tools, principals and effect keys repeat from one deferral to the next, so the rules
whose globs match one of them are remembered (a bounded memo per index: agent text
never grows it without limit).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from review.intake.policy_globs import any_of

if TYPE_CHECKING:
    from review.intake.policy import Facts, Rule

MEMO_LIMIT = 4096  # entries per memo; cleared when full (they are cheap to rebuild)
GLOB_KINDS = {"tool": "tool", "principal": "principal_id"}  # kind -> the fact its globs match


class RuleIndex:
    """The candidates among `rules` (one agent's, in file order) for a deferral's facts."""

    def __init__(self, rules: tuple[Rule, ...]):
        self.rules = rules
        self._always: list[int] = []
        self._by_arg_key: dict[str, list[int]] = {}
        self._by_label: dict[str, list[int]] = {}
        self._by_path_part: dict[str, list[int]] = {}  # diff_field: its fields, lowered
        self._globbed: dict[str, list[tuple[int, Any]]] = {fact: [] for fact in GLOB_KINDS.values()}
        self._fields: list[tuple[int, Any]] = []
        self._memo: dict[tuple[str, str], tuple[int, ...]] = {}
        for i, rule in enumerate(rules):
            keys, fields = rule._keys, rule._fields  # type: ignore[attr-defined]
            if keys is not None:
                for key in keys:
                    self._by_arg_key.setdefault(key, []).append(i)
            elif fields is not None:
                self._fields.append((i, fields))
            elif rule.kind == "diff_field":
                for field in rule.params["fields"]:
                    self._by_path_part.setdefault(field.lower(), []).append(i)
            elif rule.kind == "label":
                self._by_label.setdefault(rule.params["key"], []).append(i)
            elif rule.kind in GLOB_KINDS:
                pattern = any_of(tuple(rule.params["match"]))
                self._globbed[GLOB_KINDS[rule.kind]].append((i, pattern))
            else:
                self._always.append(i)

    def candidates(self, facts: Facts) -> list[Rule]:
        found = set(self._always)
        by_arg_key, by_label = self._by_arg_key, self._by_label
        if by_arg_key:
            for key in facts.arg_index:
                found.update(by_arg_key.get(key, ()))
        if by_label:
            for key in facts.labels:
                found.update(by_label.get(key, ()))
        by_path_part = self._by_path_part
        if by_path_part:  # as _match_diff_field splits them (review/intake/policy_rules.py)
            for path in facts.changed_paths:
                for part in path.lower().split("/"):
                    found.update(by_path_part.get(part, ()))
        for fact, globbed in self._globbed.items():
            if globbed:
                found.update(self._matching("glob:" + fact, getattr(facts, fact), globbed))
        if self._fields:
            for key in facts.effect_keys:
                found.update(self._matching("field", key, self._fields))
        rules = self.rules
        return [rules[i] for i in sorted(found)]

    def _matching(self, space: str, text: str, globbed: list[tuple[int, Any]]) -> tuple[int, ...]:
        """The rules among `globbed` whose pattern matches `text`, remembered."""
        memo_key = (space, text)
        hit = self._memo.get(memo_key)
        if hit is None:
            if len(self._memo) >= MEMO_LIMIT:
                self._memo.clear()
            hit = tuple(i for i, pattern in globbed if pattern.match(text))
            self._memo[memo_key] = hit
        return hit
