"""Each agent's pact: its declared scope in the policy file, `[agents.<slug>]`.

    [agents.billing-bot]
    description = "Refunds and credit notes for the billing team"   # optional
    tools = ["billing.*", "crm.get_*"]      # the tools it may ask for at all

A deferral of a tool outside the scope is denied (rule `agent_scope`, review/intake/
policy.py). Rules name the agents they are for with `agents = ["billing-bot"]`; with
the scope they make the agent's readable specification (review/agents/pacts.py): its
hard prohibitions (`outcome = "deny"`), its escalation triggers (`"ask"`) and what it
may do unreviewed (`"allow"`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from review.intake.policy_globs import any_of

AGENT_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
PACT_KEYS = frozenset({"tools", "description"})


@dataclass(frozen=True)
class Pact:
    """An agent's declared scope: the tools (globs, as rules of kind `tool` match them)
    it may ask for at all."""

    agent: str
    tools: tuple[str, ...]
    description: str = ""

    def allows(self, tool: str) -> bool:
        return any_of(self.tools).match(tool) is not None


class PactError(Exception):
    def __init__(self, slug: str | None, key: str | None, reason: str):
        super().__init__(reason)
        self.slug, self.key, self.reason = slug, key, reason


def parse_pacts(raw: Any) -> dict[str, Pact]:
    """The `agents` table of a policy file; PactError names the table and key at fault."""
    if not isinstance(raw, dict):
        raise PactError(None, None, "agents must be a table of [agents.<slug>] tables")
    pacts: dict[str, Pact] = {}
    for slug, table in raw.items():
        if not AGENT_SLUG.match(slug):
            raise PactError(slug, None, f"agents.{slug}: {slug!r} is not an agent slug")
        if not isinstance(table, dict):
            raise PactError(slug, None, f"agents.{slug} must be a table with tools = [...]")
        extra = sorted(set(table) - PACT_KEYS)
        if extra:
            raise PactError(slug, extra[0], f"agents.{slug}: unknown keys {extra}")
        tools = table.get("tools")
        if not (isinstance(tools, list) and tools and all(isinstance(t, str) and t for t in tools)):
            raise PactError(
                slug, "tools", f"agents.{slug}: tools must be a non-empty list of globs"
            )
        description = table.get("description", "")
        if not isinstance(description, str):
            raise PactError(slug, "description", f"agents.{slug}: description must be a string")
        pacts[slug] = Pact(slug, tuple(tools), description)
    return pacts


def pact_line(
    lines: list[str],
    slug: str,
    key: str | None,
    line_of_key: Callable[[list[str], int, str | None], int | None],
) -> int | None:
    """The line of `[agents.<slug>]` (or of its `key` within it), 1-based."""
    name = rf"""(?:{re.escape(slug)}|"{re.escape(slug)}"|'{re.escape(slug)}')"""
    header = re.compile(rf"^\s*\[\s*agents\s*\.\s*{name}\s*\]")
    for n, line in enumerate(lines):
        if header.match(line):
            return line_of_key(lines, n + 1, key) or n + 1
    return None
