"""The risk policy: deterministic rules from config/policy.toml that score a deferral and
may decide it.

Every matching rule adds points and one line of detail; the score is clamped to 0..100;
the agent's own claim can raise it (factor `agent_claim`) but never lower it. A rule may
also set an outcome: `deny` (rejected at intake), `ask` (a person decides: also what a
deferral gets when no rule sets one) or `allow` (approved at intake). The most
restrictive outcome among the matching rules wins, and `risk.rule` names the first rule
(in file order) that set it. `allow` is withheld (the outcome becomes `ask`, with a
zero-point factor `auto_allow_withheld` saying why) when the level is above the
auto-allow ceiling (`auto_allow_ceiling`) or the diff was truncated, since then not all
of the change was judged.

The rule kinds live in review/intake/policy_rules.py; the file's format is documented at
the top of config/policy.toml; review/intake/policy_loading.py reads it into a Policy.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

from review.intake import policy_windows
from review.intake.policy_conditions import holds
from review.intake.policy_effects import Effect, effects_of
from review.intake.policy_globs import any_of, lowered
from review.intake.policy_index import RuleIndex
from review.intake.policy_pacts import Pact
from review.intake.policy_routes import NO_ROUTE, Route, choose_route
from review.intake.policy_rules import KINDS, index_args
from review.settings import Settings

LEVELS = ("low", "medium", "high", "critical")
OUTCOMES = ("allow", "ask", "deny")  # from least to most restrictive
CEILINGS = ("none", *LEVELS)  # the highest level `allow` may decide; none: never
RULE_ID = re.compile(r"^[a-z0-9_]{1,64}$")
MAX_SHOWN = 80  # characters of agent text quoted in a detail
WITHHELD = "auto_allow_withheld"
# Kinds whose `fields` globs are matched against the keys on an effect's path.
FIELD_KINDS = frozenset(
    {"field_value", "number_lowered", "number_raised", "list_shrunk", "key_removed", "turned_off"}
)
SCOPE = "agent_scope"  # the factor and rule of a tool outside the agent's declared scope
RESERVED_IDS = frozenset({"agent_claim", WITHHELD, SCOPE})  # factors the policy itself adds


@dataclass(frozen=True)
class Facts:
    """What the rules look at, taken from one deferral request and its diff."""

    tool: str
    args: dict[str, Any]
    principal_id: str
    labels: dict[str, str] = field(default_factory=dict)
    changed_paths: list[str] = field(default_factory=list)
    change_count: int = 0
    agent_score: int | None = None
    changes: list[dict[str, Any]] = field(default_factory=list)  # the stored diff's changes
    diff_truncated: bool = False
    principal_verified: bool = False  # on_behalf_of.token verified (review/intake/principals.py)
    principal_groups: tuple[str, ...] = ()  # the verified principal's groups
    principal_identity: str | None = None  # the verified identity (separation of duties')
    agent: str | None = None  # the agent's slug: its pact and the rules scoped to it
    # The window rules' counts (review/intake/policy_windows.py); None: Redis could not say.
    windows: dict[str, policy_windows.Counted] | None = field(default_factory=dict)

    @functools.cached_property
    def effects(self) -> list[Effect]:
        return effects_of(self.changes)

    @functools.cached_property
    def arg_index(self) -> dict[str, list[tuple[int, str, Any]]]:
        return index_args(self.args)

    @functools.cached_property
    def effect_keys(self) -> frozenset[str]:
        return frozenset(k for e in self.effects for k in e.keys)

    def has_effect_key(self, pattern: re.Pattern[str]) -> bool:
        return any(pattern.match(k) for k in self.effect_keys)


@dataclass(frozen=True)
class Evaluation:
    score: int
    level: str
    factors: list[dict[str, Any]]
    agent_score: int | None
    policy_version: str
    outcome: str = "ask"
    rule: str | None = None  # the rule that set the outcome; None: no rule did
    route: Route = NO_ROUTE  # the reviewer group and quorum the rules ask (policy_routes.py)

    def as_risk(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "level": self.level,
            "agent_score": self.agent_score,
            "factors": self.factors,
            "policy_version": self.policy_version,
            "outcome": self.outcome,
            "rule": self.rule,
        }

    @property
    def reason(self) -> str:
        """Why policy decided it: the rule and its detail (for `decision.reason`)."""
        detail = next((f["detail"] for f in self.factors if f["rule"] == self.rule), "")
        return f"policy rule {self.rule}: {detail}"


@dataclass(frozen=True)
class Rule:
    id: str
    kind: str
    points: int
    detail: str
    params: dict[str, Any]
    outcome: str | None = None
    when: dict[str, Any] | None = None  # conditions (review/intake/policy_conditions.py)
    agents: tuple[str, ...] | None = None  # None: every agent; else only these (their pacts)
    group: str | None = None  # routing (review/intake/policy_routes.py)
    quorum: int | None = None

    def __post_init__(self) -> None:
        # Worked out once, so most rules are passed over without running their matcher:
        # one on arguments needs one of its keys among the arguments', one on the effect
        # a key its `fields` match among the effects' keys.
        keys = self.params.get("keys") if "keys" in KINDS[self.kind].required else None
        fields = self.params.get("fields") if self.kind in FIELD_KINDS else None
        matcher = KINDS[self.kind].match
        object.__setattr__(self, "_matcher", matcher)
        object.__setattr__(self, "_keys", frozenset(k.lower() for k in keys) if keys else None)
        object.__setattr__(self, "_fields", any_of(lowered(tuple(fields))) if fields else None)

    def apply(self, facts: Facts) -> dict[str, Any] | None:
        if self._keys is not None and self._keys.isdisjoint(facts.arg_index):  # type: ignore[attr-defined]
            return None
        if self._fields is not None and not facts.has_effect_key(self._fields):  # type: ignore[attr-defined]
            return None
        if self.when and not holds(self.when, facts):
            return None
        if self.kind in policy_windows.WINDOW_KINDS:
            values = policy_windows.match_window(self, facts)
        else:
            values = self._matcher(self.params, facts)  # type: ignore[attr-defined]
        if values is None:
            return None
        shown = {k: _shorten(v) for k, v in values.items()}
        return {"rule": self.id, "points": self.points, "detail": self.detail.format(**shown)}


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...]
    thresholds: tuple[int, int, int]
    version: str
    auto_allow_max_level: str = "medium"
    pacts: dict[str, Pact] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The rules each agent gets, worked out once: every agent's, then its own, in file
        # order. An agent no rule names gets the shared tuple.
        shared = tuple(r for r in self.rules if r.agents is None)
        named = {a for r in self.rules for a in r.agents or ()}
        by_agent = {
            a: tuple(r for r in self.rules if r.agents is None or a in r.agents) for a in named
        }
        object.__setattr__(self, "_shared", shared)
        object.__setattr__(self, "_by_agent", by_agent)
        # Each of those tuples indexed by what its rules need (review/intake/policy_index.py).
        indexes = {a: RuleIndex(rules) for a, rules in by_agent.items()}
        object.__setattr__(self, "_shared_index", RuleIndex(shared))
        object.__setattr__(self, "_indexes", indexes)

    def rules_for(self, agent: str | None) -> tuple[Rule, ...]:
        """The rules that judge `agent`'s deferrals (None: only those for every agent)."""
        return self._by_agent.get(agent, self._shared) if agent else self._shared  # type: ignore[attr-defined]

    def candidates(self, facts: Facts) -> list[Rule]:
        """The rules for `facts.agent` that could match `facts`, in file order."""
        agent = facts.agent
        index = self._indexes.get(agent, self._shared_index) if agent else self._shared_index  # type: ignore[attr-defined]
        return index.candidates(facts)

    @functools.cached_property
    def window_rules(self) -> tuple[Rule, ...]:
        """The window rules, in file order (every intake asks for their counters)."""
        return tuple(r for r in self.rules if r.kind in policy_windows.WINDOW_KINDS)

    @functools.cached_property
    def has_windows(self) -> bool:
        return bool(self.window_rules)

    def level_for(self, score: int) -> str:
        for level, bound in zip(LEVELS, self.thresholds, strict=False):
            if score < bound:
                return level
        return "critical"

    def evaluate(self, facts: Facts) -> Evaluation:
        matched: list[tuple[Rule, dict[str, Any]]] = []
        for rule in self.candidates(facts):  # the others could not match: not asked
            factor = rule.apply(facts)
            if factor is not None:
                matched.append((rule, factor))
        factors = [f for _, f in matched]
        if facts.windows is None and self.has_windows:
            factors.append(policy_windows.unavailable_factor(self))
        score = max(0, min(100, sum(f["points"] for f in factors)))
        if facts.agent_score is not None and facts.agent_score > score:
            factors.append(
                {
                    "rule": "agent_claim",
                    "points": facts.agent_score - score,
                    "detail": f"the agent rated this {facts.agent_score}",
                }
            )
            score = facts.agent_score
        level = self.level_for(score)
        pact = self.pacts.get(facts.agent) if facts.agent else None
        if pact is not None and not pact.allows(facts.tool):
            factors.append(
                {
                    "rule": SCOPE,
                    "points": 0,
                    "detail": f"{_shorten(facts.tool)} is outside {pact.agent}'s scope "
                    f"({', '.join(pact.tools)})",
                }
            )
            return Evaluation(score, level, factors, facts.agent_score, self.version, "deny", SCOPE)
        outcome, rule = self._outcome([r for r, _ in matched if r.outcome], level, facts, factors)
        route = choose_route(r for r, _ in matched if r.group or r.quorum)
        return Evaluation(
            score, level, factors, facts.agent_score, self.version, outcome, rule, route
        )

    def _outcome(
        self, deciding: list[Rule], level: str, facts: Facts, factors: list[dict[str, Any]]
    ) -> tuple[str, str | None]:
        if not deciding:
            return "ask", None
        strictest = max(OUTCOMES.index(r.outcome or "ask") for r in deciding)
        first = next(r for r in deciding if r.outcome == OUTCOMES[strictest])
        if first.outcome != "allow":
            return first.outcome or "ask", first.id
        if CEILINGS.index(level) > CEILINGS.index(self.auto_allow_max_level):
            why = f"a {level} score is never allowed automatically"
        elif facts.diff_truncated:
            why = "the diff was truncated, so not all of the change was judged"
        elif facts.windows is None and self.has_windows:
            why = "recent activity could not be counted, so the window rules were not judged"
        else:
            return "allow", first.id
        factors.append(
            {"rule": WITHHELD, "points": 0, "detail": f"{first.id} allows it, but {why}"}
        )
        return "ask", None


def _shorten(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_SHOWN:
        return value[: MAX_SHOWN - 1] + "…"
    return value


def auto_allow_ceiling(settings: Settings) -> str:
    """The highest level policy may allow: COUNTERSIGN_AUTO_ALLOW_MAX_LEVEL, and always
    below COUNTERSIGN_TWO_PERSON_LEVEL (what needs two people never needs none)."""
    ceiling = CEILINGS.index(settings.auto_allow_max_level)
    if settings.two_person_level in LEVELS:
        ceiling = min(ceiling, CEILINGS.index(settings.two_person_level) - 1)
    return CEILINGS[ceiling]
