"""Reading the risk policy file (config/policy.toml) into a Policy, and finding the line
an error is on.

A policy that does not load raises PolicyError naming the file's line, for the app's
start and for `flask policy check`. The version (`policy_version` on every deferral) is
the SHA-256 of the RFC 8785 canonical form of what was read, with the levels and the
auto-allow ceiling it runs under.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path
from typing import Any

import rfc8785

from review.intake.policy import (
    CEILINGS,
    OUTCOMES,
    RESERVED_IDS,
    RULE_ID,
    Policy,
    Rule,
    auto_allow_ceiling,
)
from review.intake.policy_conditions import check_when
from review.intake.policy_pacts import AGENT_SLUG, Pact, PactError, pact_line, parse_pacts
from review.intake.policy_routes import check_route
from review.intake.policy_rules import KINDS, check_params
from review.settings import Settings, SettingsError


def policy_from_settings(settings: Settings, path: Path | None = None) -> Policy:
    """The policy at `path` (default: the configured file) under the configured levels."""
    return load_policy(
        path or settings.policy_path, settings.risk_levels, auto_allow_ceiling(settings)
    )


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
