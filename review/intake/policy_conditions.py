"""A rule's `when`: conditions that must also hold for the rule to match, whatever its kind.

Entitlements are conditions on who asked (PROTOCOL.md section 17): whether a trusted
identity provider verified the principal, and the groups it says they are in. With a
`tool` condition a rule of any kind can be narrowed to some tools, so "refunds over 500
need a principal in finance" is one rule:

    kind = "argument_over"  keys = ["amount"]  threshold = 500
    when = { tool = ["*.refund"], principal_not_in = ["finance"] }

An unverified principal has no groups: `principal_not_in` holds for them, and
`principal_in` never does. For the window kinds (review/intake/policy_windows.py),
`when` also says which deferrals the window counts.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from review.intake.policy import Facts

# Each condition and the type of its value.
CONDITIONS: dict[str, type] = {
    "tool": list,  # globs on action.tool; one must match
    "principal_verified": bool,  # true: only verified principals; false: only claimed ones
    "principal_in": list,  # the verified principal is in at least one of these groups
    "principal_not_in": list,  # ... in none of them (an unverified one is in none)
}


def check_when(when: Any) -> tuple[str | None, str] | None:
    """What is wrong with a `when` table: (the condition at fault or None, why); None: fine."""
    if not isinstance(when, dict) or not when:
        return None, 'when must be a table of conditions, e.g. when = { tool = ["*.refund"] }'
    for key, value in when.items():
        typ = CONDITIONS.get(key)
        if typ is None:
            return key, f"when.{key} is not a condition (one of {', '.join(CONDITIONS)})"
        if typ is bool and not isinstance(value, bool):
            return key, f"when.{key} must be true or false"
        if typ is list and not (
            isinstance(value, list) and value and all(isinstance(v, str) and v for v in value)
        ):
            return key, f"when.{key} must be a non-empty list of strings"
    return None


def holds(when: dict[str, Any], facts: Facts) -> bool:
    """Whether every condition of `when` holds for these facts."""
    tools = when.get("tool")
    if tools is not None and not any(fnmatchcase(facts.tool, p) for p in tools):
        return False
    verified = when.get("principal_verified")
    if verified is not None and facts.principal_verified is not verified:
        return False
    groups = set(facts.principal_groups) if facts.principal_verified else set()
    wanted = when.get("principal_in")
    if wanted is not None and not groups & set(wanted):
        return False
    barred = when.get("principal_not_in")
    return not (barred is not None and groups & set(barred))
