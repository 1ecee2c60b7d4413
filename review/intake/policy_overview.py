"""The policy as its readers see it: each rule's condition in words, and how often each
rule matched lately, with the outcomes of what it matched (the policy page, the pacts).

The counts come from one grouped statement over the deferrals of the window, served by
`ix_deferrals_created` (created_at): each deferral's stored factors (`risk_factors`, a
JSON array) are unnested in the database (SQLite's json_each, PostgreSQL's
jsonb_array_elements), so what leaves the database is one row per rule and outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session

from review.intake.policy import Rule
from review.models import UTCDateTime

WINDOW_DAYS = 7

_PARAM_WORDS = {
    "match": "matches",
    "keys": "under",
    "threshold": "over",
    "values": "is one of",
    "like": "is like",
    "internal_domains": "outside",
    "over": "over",
    "key": "label",
    "fields": "fields",
    "from": "from",
    "to": "to",
    "to_like": "to like",
    "to_at_most": "to at most",
    "to_at_least": "to at least",
    "by_ratio": "by a ratio of",
    "by_at_least": "by at least",
}


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_shown(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def condition(rule: Rule) -> str:
    """`tool matches billing.*, payments.*`; `argument_over under amount over 500`."""
    parts = [f"{_PARAM_WORDS.get(k, k)} {_shown(v)}" for k, v in rule.params.items()]
    return f"{rule.kind}: " + "; ".join(parts)


@dataclass
class RuleStats:
    matched: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)  # the policy's outcome: allow/ask/deny


_SQLITE = text(
    "SELECT json_extract(f.value, '$.rule') AS rule,"
    " COALESCE(json_extract(d.policy_outcome, '$.outcome'), 'ask') AS outcome, count(*)"
    " FROM deferrals d, json_each(d.risk_factors) f"
    " WHERE d.created_at >= :since AND d.canary IS NULL GROUP BY 1, 2"
).bindparams(bindparam("since", type_=UTCDateTime))
_POSTGRES = text(
    "SELECT f ->> 'rule' AS rule, COALESCE(d.policy_outcome ->> 'outcome', 'ask') AS outcome,"
    " count(*) FROM deferrals d, jsonb_array_elements(d.risk_factors) f"
    " WHERE d.created_at >= :since AND d.canary IS NULL GROUP BY 1, 2"
).bindparams(bindparam("since", type_=UTCDateTime))


def rule_stats(session: Session, since: datetime) -> dict[str, RuleStats]:
    """Per rule id: the deferrals since `since` it matched, by the policy's outcome."""
    statement = _SQLITE if session.get_bind().dialect.name == "sqlite" else _POSTGRES
    stats: dict[str, RuleStats] = {}
    for rule, outcome, count in session.execute(statement, {"since": since}):
        s = stats.setdefault(rule, RuleStats())
        s.matched += count
        s.outcomes[outcome] = s.outcomes.get(outcome, 0) + count
    return stats
