"""The risk policy: deterministic rules from config/policy.toml that score a deferral.

Every matching rule adds points and one line of detail; the score is clamped to
0..100; the agent's own claim can raise it (factor `agent_claim`) but never lower it.
The rule kinds and the file's format are documented at the top of config/policy.toml.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import rfc8785

from review.settings import SettingsError

LEVELS = ("low", "medium", "high", "critical")
RULE_ID = re.compile(r"^[a-z0-9_]{1,64}$")
EMAIL = re.compile(r"[A-Za-z0-9._%+'-]+@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
MAX_WALK = 20_000  # values inspected per deferral; arguments are capped at 1 MiB anyway
MAX_SHOWN = 80  # characters of agent text quoted in a detail


@dataclass(frozen=True)
class Facts:
    """What the rules look at, taken from one deferral request."""

    tool: str
    args: dict[str, Any]
    principal_id: str
    labels: dict[str, str] = field(default_factory=dict)
    changed_paths: list[str] = field(default_factory=list)
    change_count: int = 0
    agent_score: int | None = None


@dataclass(frozen=True)
class Evaluation:
    score: int
    level: str
    factors: list[dict[str, Any]]
    agent_score: int | None
    policy_version: str

    def as_risk(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "level": self.level,
            "agent_score": self.agent_score,
            "factors": self.factors,
            "policy_version": self.policy_version,
        }


Matcher = Callable[[dict[str, Any], Facts], "dict[str, Any] | None"]


@dataclass(frozen=True)
class Rule:
    id: str
    kind: str
    points: int
    detail: str
    params: dict[str, Any]

    def apply(self, facts: Facts) -> dict[str, Any] | None:
        values = MATCHERS[self.kind][1](self.params, facts)
        if values is None:
            return None
        shown = {k: _shorten(v) for k, v in values.items()}
        return {"rule": self.id, "points": self.points, "detail": self.detail.format(**shown)}


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...]
    thresholds: tuple[int, int, int]
    version: str

    def level_for(self, score: int) -> str:
        for level, bound in zip(LEVELS, self.thresholds, strict=False):
            if score < bound:
                return level
        return "critical"

    def evaluate(self, facts: Facts) -> Evaluation:
        factors = [f for f in (rule.apply(facts) for rule in self.rules) if f is not None]
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
        return Evaluation(score, self.level_for(score), factors, facts.agent_score, self.version)


# --- matchers: each returns the detail's placeholder values, or None -----------------


def _walk(value: Any) -> Iterator[tuple[str, Any]]:
    """(key, value) for every value under a dict key, at any depth, breadth-first, capped."""
    stack: deque[Any] = deque([value])
    seen = 0
    while stack and seen < MAX_WALK:
        node = stack.popleft()
        items = node.items() if isinstance(node, dict) else ()
        for key, child in items:
            seen += 1
            yield str(key), child
            if isinstance(child, dict | list):
                stack.append(child)
        if isinstance(node, list):
            for child in node:
                seen += 1
                if isinstance(child, dict | list):
                    stack.append(child)


def _keyed(params: dict[str, Any], facts: Facts) -> Iterator[tuple[str, Any]]:
    wanted = {k.lower() for k in params["keys"]}
    for key, value in _walk(facts.args):
        if key.lower() in wanted:
            yield key, value


def _match_tool(params: dict[str, Any], facts: Facts) -> dict[str, Any] | None:
    for pattern in params["match"]:
        if fnmatchcase(facts.tool, pattern):
            return {"tool": facts.tool, "pattern": pattern}
    return None


def _match_argument_over(params: dict[str, Any], facts: Facts) -> dict[str, Any] | None:
    threshold = params["threshold"]
    for key, value in _keyed(params, facts):
        if isinstance(value, int | float) and not isinstance(value, bool) and value > threshold:
            return {"key": key, "value": value, "threshold": threshold}
    return None


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _domains_in(value: Any) -> Iterator[tuple[str, str]]:
    """(address as written, its domain) for e-mail addresses, URLs and bare domains."""
    for text in _strings(value):
        found = False
        for match in EMAIL.finditer(text):
            found = True
            yield match.group(0), match.group(1).lower()
        if found:
            continue
        host = urlsplit(text).hostname if "://" in text else text.strip()
        if host and "." in host and " " not in host:
            yield text, host.lower().rstrip(".")


def _match_external_address(params: dict[str, Any], facts: Facts) -> dict[str, Any] | None:
    internal = [d.lower() for d in params["internal_domains"]]
    for key, value in _keyed(params, facts):
        for address, domain in _domains_in(value):
            if not any(domain == d or domain.endswith("." + d) for d in internal):
                return {"key": key, "address": address, "domain": domain}
    return None


def _match_list_size(params: dict[str, Any], facts: Facts) -> dict[str, Any] | None:
    for key, value in _keyed(params, facts):
        if isinstance(value, list) and len(value) > params["over"]:
            return {"key": key, "count": len(value)}
    return None


def _match_diff_field(params: dict[str, Any], facts: Facts) -> dict[str, Any] | None:
    fields_ = {f.lower() for f in params["fields"]}
    for path in facts.changed_paths:
        for part in path.lower().split("/"):
            if part in fields_:
                return {"path": path, "field": part}
    return None


def _match_diff_size(params: dict[str, Any], facts: Facts) -> dict[str, Any] | None:
    if facts.change_count > params["over"]:
        return {"count": facts.change_count}
    return None


def _match_label(params: dict[str, Any], facts: Facts) -> dict[str, Any] | None:
    value = facts.labels.get(params["key"])
    if value is not None and value in params["values"]:
        return {"key": params["key"], "value": value}
    return None


def _match_principal(params: dict[str, Any], facts: Facts) -> dict[str, Any] | None:
    for pattern in params["match"]:
        if fnmatchcase(facts.principal_id, pattern):
            return {"principal": facts.principal_id, "pattern": pattern}
    return None


# kind -> (required parameters with their types, matcher)
MATCHERS: dict[str, tuple[dict[str, type | tuple[type, ...]], Matcher]] = {
    "tool": ({"match": list}, _match_tool),
    "argument_over": ({"keys": list, "threshold": (int, float)}, _match_argument_over),
    "external_address": ({"keys": list, "internal_domains": list}, _match_external_address),
    "list_size": ({"keys": list, "over": int}, _match_list_size),
    "diff_field": ({"fields": list}, _match_diff_field),
    "diff_size": ({"over": int}, _match_diff_size),
    "label": ({"key": str, "values": list}, _match_label),
    "principal": ({"match": list}, _match_principal),
}


def _shorten(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_SHOWN:
        return value[: MAX_SHOWN - 1] + "…"
    return value


# --- loading ----------------------------------------------------------------------------


def load_policy(path: Path, thresholds: tuple[int, int, int]) -> Policy:
    where = f"risk policy {path}"
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"{where}: {exc}") from None
    unknown = set(data) - {"rule"}
    if unknown:
        raise SettingsError(f"{where}: unknown top-level keys {sorted(unknown)}")
    rules = tuple(_parse_rule(raw, where, i) for i, raw in enumerate(data.get("rule", [])))
    ids = [r.id for r in rules]
    duplicates = {i for i in ids if ids.count(i) > 1}
    if duplicates:
        raise SettingsError(f"{where}: duplicate rule ids {sorted(duplicates)}")
    canonical = {
        "levels": list(thresholds),
        "rules": [
            {"id": r.id, "kind": r.kind, "points": r.points, "detail": r.detail, **r.params}
            for r in rules
        ],
    }
    version = "sha256:" + hashlib.sha256(rfc8785.dumps(canonical)).hexdigest()
    return Policy(rules, thresholds, version)


def _parse_rule(raw: Any, where: str, index: int) -> Rule:
    name = f"{where}: rule #{index + 1}"
    if not isinstance(raw, dict):
        raise SettingsError(f"{name} is not a table")
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not RULE_ID.match(rule_id):
        raise SettingsError(f"{name}: id must be 1-64 of a-z, 0-9 and _")
    name = f"{where}: rule {rule_id!r}"
    kind = raw.get("kind")
    if kind not in MATCHERS:
        raise SettingsError(f"{name}: kind must be one of {', '.join(MATCHERS)}")
    points = raw.get("points")
    if not isinstance(points, int) or isinstance(points, bool) or not -100 <= points <= 100:
        raise SettingsError(f"{name}: points must be a whole number from -100 to 100")
    detail = raw.get("detail")
    if not isinstance(detail, str) or not detail:
        raise SettingsError(f"{name}: detail must be a non-empty string")
    required = MATCHERS[kind][0]
    params = {k: v for k, v in raw.items() if k not in {"id", "kind", "points", "detail"}}
    extra = set(params) - set(required)
    if extra:
        raise SettingsError(f"{name}: unknown keys {sorted(extra)} for kind {kind}")
    for key, typ in required.items():
        if not isinstance(params.get(key), typ) or isinstance(params.get(key), bool):
            raise SettingsError(f"{name}: {key} is required for kind {kind}")
    try:  # every placeholder must be one the kind provides
        detail.format(**{p: "" for p in _placeholders(kind)})
    except (KeyError, IndexError, ValueError) as exc:
        raise SettingsError(f"{name}: detail uses an unknown placeholder {exc}") from None
    return Rule(rule_id, kind, points, detail, params)


def _placeholders(kind: str) -> tuple[str, ...]:
    return {
        "tool": ("tool", "pattern"),
        "argument_over": ("key", "value", "threshold"),
        "external_address": ("key", "address", "domain"),
        "list_size": ("key", "count"),
        "diff_field": ("path", "field"),
        "diff_size": ("count",),
        "label": ("key", "value"),
        "principal": ("principal", "pattern"),
    }[kind]
