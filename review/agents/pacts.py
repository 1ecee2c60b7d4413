"""Each agent's pact as its page shows it, and how the agent behaved against it.

The pact is read from the policy (review/intake/policy_pacts.py): the declared scope
(`[agents.<slug>]`: the tools it may ask for at all), its hard prohibitions (rules with
`outcome = "deny"`), its escalation triggers (`"ask"`) and what it may do unreviewed
(`"allow"`): first the rules that name the agent, then those for every agent.

Its behaviour comes from one grouped statement over the agent's deferrals of the last
30 days, served by the index (agent_id, created_at) (`ix_deferrals_agent_created`): a
range scan of one agent's rows, grouped into a handful of counts, for the last 7 and 30
days at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from review.intake.policy import SCOPE, Policy, Rule
from review.intake.policy_pacts import Pact
from review.models import Deferral, utcnow

WINDOWS = (7, 30)  # days


@dataclass(frozen=True)
class PactView:
    """What an agent is bound by, each list its own rules first."""

    agent: str
    scope: Pact | None  # None: no declared scope, any tool may be asked for
    prohibitions: list[Rule]  # deny
    escalations: list[Rule]  # ask
    allowances: list[Rule]  # allow

    @property
    def empty(self) -> bool:
        return not (self.scope or self.prohibitions or self.escalations or self.allowances)


def pact_of(policy: Policy, slug: str) -> PactView:
    rules = sorted(policy.rules_for(slug), key=lambda r: r.agents is None)  # own rules first

    def with_outcome(outcome: str) -> list[Rule]:
        return [r for r in rules if r.outcome == outcome]

    return PactView(
        agent=slug,
        scope=policy.pacts.get(slug),
        prohibitions=with_outcome("deny"),
        escalations=with_outcome("ask"),
        allowances=with_outcome("allow"),
    )


@dataclass
class Behaviour:
    """One window's counts of the agent's deferrals against its pact."""

    days: int
    total: int = 0
    scope_violations: int = 0  # denied: a tool outside its scope
    denials: int = 0  # denied by the policy (scope violations included)
    escalations: int = 0  # an `ask` rule sent it to a person
    approved: int = 0  # by people
    rejected: int = 0  # by people
    allowed: int = 0  # by the policy

    @property
    def approval_rate(self) -> str:
        decided = self.approved + self.rejected
        return f"{100 * self.approved / decided:.0f}%" if decided else "–"


def behaviour(session: Session, agent_id: int, now: datetime | None = None) -> list[Behaviour]:
    """The last 7 and 30 days' counts, from one grouped statement (see the module doc)."""
    now = now or utcnow()
    since = {days: now - timedelta(days=days) for days in WINDOWS}
    outcome = Deferral.policy_outcome["outcome"].as_string()
    rule = Deferral.policy_outcome["rule"].as_string()
    recent = case((Deferral.created_at >= since[7], 1), else_=0)
    # The same expression objects in SELECT and GROUP BY: PostgreSQL compares them with
    # their bound parameters, so the statement must render each only once.
    rows = session.execute(
        select(recent, Deferral.status, outcome, rule, func.count())
        .where(
            Deferral.agent_id == agent_id,
            Deferral.created_at >= since[30],
            Deferral.canary.is_(None),  # canaries are not the agent's (review/canaries/)
        )
        .group_by(recent, Deferral.status, outcome, rule)
    ).all()
    found = {days: Behaviour(days) for days in WINDOWS}
    for is_recent, status, decided_by_policy, rule_id, count in rows:
        out_of_scope, has_rule = rule_id == SCOPE, rule_id is not None
        for days in WINDOWS:
            if days == 7 and not is_recent:
                continue
            b = found[days]
            b.total += count
            if decided_by_policy == "deny":
                b.denials += count
                b.scope_violations += count if out_of_scope else 0
            elif decided_by_policy == "allow":
                b.allowed += count
            else:
                b.escalations += count if has_rule else 0
                b.approved += count if status == "approved" else 0
                b.rejected += count if status == "rejected" else 0
    return [found[days] for days in WINDOWS]
