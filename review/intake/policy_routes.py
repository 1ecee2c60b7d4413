"""Routing (PROTOCOL.md section 10): which reviewers may claim a deferral, and how many
distinct approvers it needs.

A rule may name a reviewer `group` (only its members, and admins, may claim what it
routes there) and a `quorum` (distinct approvers needed, 1-10). When several matching
rules route, the most restrictive wins:

- the quorum is the highest any matching rule asks for, and never less than the
  deferral's level asks for (two from COUNTERSIGN_TWO_PERSON_LEVEL up, else one);
- the group is the one named by the matching rule with the highest quorum (a rule with
  a group and no quorum counts as 1); on a tie, the first such rule in the file. One
  group, not several: "members of finance AND of security" would need a person in both.

A group that does not exist when a deferral arrives is not a route nobody can take:
intake falls back to any reviewer (the quorum stays) and says so in the `evaluated`
event (`route.fallback`). `flask policy check` reports such groups first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from review.groups import GROUP_NAME, GROUP_NAME_RULE

MAX_QUORUM = 10
LEVELS = ("low", "medium", "high", "critical")


class Routing(Protocol):
    id: str
    group: str | None
    quorum: int | None


@dataclass(frozen=True)
class Route:
    """What the matching rules ask: a group (None: any reviewer) and a quorum (None:
    whatever the level needs), and the rule whose group it is."""

    group: str | None = None
    quorum: int | None = None
    rule: str | None = None

    def shown(self, required: int | None = None) -> dict[str, Any]:
        """As `policy test` prints it and the `evaluated` event keeps it."""
        out: dict[str, Any] = {"group": self.group, "quorum": self.quorum, "rule": self.rule}
        if required is not None:
            out["required_approvals"] = required
        return out


NO_ROUTE = Route()


def check_route(raw: dict[str, Any]) -> tuple[str, str] | None:
    """(key, reason) when a rule's `group` or `quorum` is not valid; None: fine."""
    group = raw.get("group")
    if group is not None and (not isinstance(group, str) or not GROUP_NAME.match(group)):
        return "group", f"group must be a reviewer group's name ({GROUP_NAME_RULE})"
    quorum = raw.get("quorum")
    if quorum is not None and (
        not isinstance(quorum, int) or isinstance(quorum, bool) or not 1 <= quorum <= MAX_QUORUM
    ):
        return "quorum", f"quorum must be a whole number of approvers from 1 to {MAX_QUORUM}"
    return None


def choose_route(routing: Iterable[Routing]) -> Route:
    """The route of the matching rules that name a group or a quorum (see the module doc)."""
    quorum: int | None = None
    best: Routing | None = None
    for rule in routing:
        if rule.quorum is not None:
            quorum = max(quorum or 0, rule.quorum)
        if rule.group is not None and (best is None or (rule.quorum or 1) > (best.quorum or 1)):
            best = rule
    if best is None:
        return Route(None, quorum, None)
    return Route(best.group, quorum, best.id)


def level_quorum(two_person_level: str, level: str) -> int:
    """Distinct approvers a level needs by itself: two from COUNTERSIGN_TWO_PERSON_LEVEL."""
    if two_person_level not in LEVELS:  # "none"
        return 1
    return 2 if LEVELS.index(level) >= LEVELS.index(two_person_level) else 1


def required_approvals(two_person_level: str, level: str, route: Route) -> int:
    """The quorum a deferral gets: the route's, never below its level's."""
    return max(route.quorum or 1, level_quorum(two_person_level, level))


@dataclass(frozen=True)
class Routed:
    """A deferral's route once intake knows which groups exist: what it stores, and what
    the `evaluated` event keeps (with `fallback` when the rules' group does not exist)."""

    group: str | None
    required_approvals: int
    audit: dict[str, Any]


def resolve(route: Route, two_person_level: str, level: str, group_exists: bool) -> Routed:
    required = required_approvals(two_person_level, level, route)
    audit = route.shown(required)
    if route.group is not None and not group_exists:
        audit["fallback"] = (
            f"no reviewer group {route.group!r} exists: any reviewer may claim it "
            f"(rule {route.rule}); create the group or fix the rule"
        )
        return Routed(None, required, audit)
    return Routed(route.group, required, audit)
