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
the top of config/policy.toml. A policy that does not load raises PolicyError naming the
file's line, for the app's start and for `flask policy check`.
"""

from __future__ import annotations

import functools
import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rfc8785

from review.intake import policy_windows
from review.intake.policy_conditions import check_when, holds
from review.intake.policy_effects import Effect, effects_of
from review.intake.policy_globs import any_of, lowered
from review.intake.policy_index import RuleIndex
from review.intake.policy_pacts import AGENT_SLUG, Pact, PactError, pact_line, parse_pacts
from review.intake.policy_routes import NO_ROUTE, Route, check_route, choose_route
from review.intake.policy_rules import KINDS, check_params, index_args
from review.settings import Settings, SettingsError

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
    def has_windows(self) -> bool:
        return any(r.kind in policy_windows.WINDOW_KINDS for r in self.rules)

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


def policy_from_settings(settings: Settings, path: Path | None = None) -> Policy:
    """The policy at `path` (default: the configured file) under the configured levels."""
    return load_policy(
        path or settings.policy_path, settings.risk_levels, auto_allow_ceiling(settings)
    )


# --- loading ----------------------------------------------------------------------------


class PolicyError(SettingsError):
    """A policy that does not load; the message starts `risk policy FILE:LINE:`."""

    def __init__(self, path: Path, line: int | None, reason: str):
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"risk policy {where}: {reason}")
        self.path, self.line, self.reason = path, line, reason


class _RuleError(Exception):
    def __init__(self, index: int, key: str | None, reason: str):
        self.index, self.key, self.reason = index, key, reason


def load_policy(
    path: Path, thresholds: tuple[int, int, int], auto_allow_max_level: str = "medium"
) -> Policy:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(path, None, str(exc)) from None
    except tomllib.TOMLDecodeError as exc:
        at = re.search(r"at line (\d+)", str(exc))
        line = int(at.group(1)) if at else max(1, len(text.splitlines()))  # end of document
        raise PolicyError(path, line, str(exc)) from None
    if auto_allow_max_level not in CEILINGS:
        raise PolicyError(path, None, f"auto-allow ceiling must be one of {', '.join(CEILINGS)}")
    unknown = sorted(set(data) - {"rule", "agents"})
    if unknown:
        line = _line_of_key(text.splitlines(), 0, unknown[0])
        raise PolicyError(path, line, f"unknown top-level keys {unknown}")
    raw_rules = data.get("rule", [])
    try:
        if not isinstance(raw_rules, list):
            raise _RuleError(0, None, "rule must be an array of tables ([[rule]])")
        rules = tuple(_parse_rule(raw, i) for i, raw in enumerate(raw_rules))
        seen: set[str] = set()
        for i, rule in enumerate(rules):
            if rule.id in seen:
                raise _RuleError(i, "id", f"duplicate rule ids ['{rule.id}']")
            seen.add(rule.id)
    except _RuleError as exc:
        raise PolicyError(path, rule_line(text, exc.index, exc.key), exc.reason) from None
    pacts = _parse_pacts(path, text, data.get("agents", {}))
    canonical: dict[str, Any] = {
        "levels": list(thresholds),
        "auto_allow_max_level": auto_allow_max_level,
        "rules": [
            {
                "id": r.id,
                "kind": r.kind,
                "points": r.points,
                "detail": r.detail,
                **({"outcome": r.outcome} if r.outcome else {}),
                **({"when": r.when} if r.when else {}),
                **({"agents": list(r.agents)} if r.agents is not None else {}),
                **({"group": r.group} if r.group else {}),
                **({"quorum": r.quorum} if r.quorum else {}),
                **r.params,
            }
            for r in rules
        ],
    }
    if pacts:  # absent from the canonical form when there are none: versions stay as they were
        canonical["agents"] = {
            a: {"tools": list(p.tools), "description": p.description} for a, p in pacts.items()
        }
    version = "sha256:" + hashlib.sha256(rfc8785.dumps(canonical)).hexdigest()
    return Policy(rules, thresholds, version, auto_allow_max_level, pacts)


FIXED_KEYS = frozenset(
    {"id", "kind", "points", "detail", "outcome", "when", "agents", "group", "quorum"}
)


def _parse_pacts(path: Path, text: str, raw: Any) -> dict[str, Pact]:
    try:
        return parse_pacts(raw)
    except PactError as exc:
        lines = text.splitlines()
        line = (
            pact_line(lines, exc.slug, exc.key, _line_of_key)
            if exc.slug
            else _line_of_key(lines, 0, "agents")
        )
        raise PolicyError(path, line, exc.reason) from None


def _parse_rule(raw: Any, index: int) -> Rule:
    def fail(key: str | None, reason: str) -> _RuleError:
        return _RuleError(index, key, f"{name}: {reason}")

    name = f"rule #{index + 1}"
    if not isinstance(raw, dict):
        raise fail(None, "is not a table")
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not RULE_ID.match(rule_id):
        raise fail("id", "id must be 1-64 of a-z, 0-9 and _")
    name = f"rule {rule_id!r}"
    if rule_id in RESERVED_IDS:
        raise fail("id", f"{rule_id} is the policy's own factor: pick another id")
    agents = raw.get("agents")
    if agents is not None and (
        not isinstance(agents, list)
        or not agents
        or not all(isinstance(a, str) and AGENT_SLUG.match(a) for a in agents)
    ):
        raise fail("agents", "agents must be a non-empty list of agent slugs")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise fail("kind", f"kind must be one of {', '.join(KINDS)}")
    points = raw.get("points")
    if not isinstance(points, int) or isinstance(points, bool) or not -100 <= points <= 100:
        raise fail("points", "points must be a whole number from -100 to 100")
    detail = raw.get("detail")
    if not isinstance(detail, str) or not detail:
        raise fail("detail", "detail must be a non-empty string")
    outcome = raw.get("outcome")
    if outcome is not None and outcome not in OUTCOMES:
        raise fail("outcome", f"outcome must be one of {', '.join(OUTCOMES)}")
    when = raw.get("when")
    if when is not None and (problem := check_when(when)) is not None:
        raise fail("when", problem[1])
    if (bad_route := check_route(raw)) is not None:
        raise fail(*bad_route)
    spec = KINDS[kind]
    params = {k: v for k, v in raw.items() if k not in FIXED_KEYS}
    extra = sorted(set(params) - set(spec.required) - set(spec.optional))
    if extra:
        raise fail(extra[0], f"unknown keys {extra} for kind {kind}")
    for key, typ in {**spec.required, **spec.optional}.items():
        if key not in params and key not in spec.required:
            continue
        value = params.get(key)
        if not isinstance(value, typ) or isinstance(value, bool):
            raise fail(key if key in params else None, f"{key} is required for kind {kind}")
    problem = check_params(kind, params)
    if problem:
        bad = next((k for k in params if problem.startswith(k + " ")), None)
        raise fail(bad, problem)
    try:  # every placeholder must be one the kind provides
        detail.format(**{p: "" for p in spec.placeholders})
    except (KeyError, IndexError, ValueError) as exc:
        raise fail("detail", f"detail uses an unknown placeholder {exc}") from None
    return Rule(
        rule_id,
        kind,
        points,
        detail,
        params,
        outcome,
        when,
        tuple(agents) if agents else None,
        raw.get("group"),
        raw.get("quorum"),
    )


# --- where in the file ------------------------------------------------------------------

RULE_HEADER = re.compile(r"^\s*\[\[\s*rule\s*\]\]")
TABLE_HEADER = re.compile(r"^\s*\[")


def rule_line(text: str, index: int, key: str | None) -> int | None:
    """The line of rule #index's `key` (or of its [[rule]] header), 1-based."""
    lines = text.splitlines()
    headers = [n for n, line in enumerate(lines) if RULE_HEADER.match(line)]
    if index >= len(headers):
        return None
    start = headers[index]
    return _line_of_key(lines, start + 1, key) or start + 1


def _line_of_key(lines: list[str], start: int, key: str | None) -> int | None:
    """The line where `key` is set, from `start` up to the next table; a top-level key
    (start 0) may also be a table of its own."""
    if key is None:
        return None
    name = rf"""(?:{re.escape(key)}|"{re.escape(key)}"|'{re.escape(key)}')"""
    assigned = re.compile(rf"^\s*{name}\s*=")
    table = re.compile(rf"^\s*\[\[?\s*{name}\s*\]")
    top_level = start == 0
    for n in range(start, len(lines)):
        if top_level and table.match(lines[n]):
            return n + 1
        if TABLE_HEADER.match(lines[n]):
            if not top_level:
                return None  # the rule's table ended
            continue
        if assigned.match(lines[n]) and not (top_level and _in_table(lines, n)):
            return n + 1
    return None


def _in_table(lines: list[str], n: int) -> bool:
    return any(TABLE_HEADER.match(line) for line in lines[:n])
