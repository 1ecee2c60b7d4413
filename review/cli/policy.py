"""`flask policy check [FILE]` and `flask policy test DEFERRAL.json` (PROTOCOL.md section 10).

`check` loads a policy file as the app would (the configured risk levels and auto-allow
ceiling) and exits 1 with `FILE:LINE: reason` for the first error, a rule that routes
to a reviewer group that does not exist among them (intake would fall back to any
reviewer). `test` runs a
deferral request through intake's own scoring (the diff, the facts, the rules) without
storing anything, and prints what the policy makes of it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import click
from flask.cli import AppGroup
from sqlalchemy import select

from review.api.schema import validate
from review.errors import InvalidRequest
from review.groups import Group
from review.intake.policy import Policy
from review.intake.policy_loading import policy_from_settings, rule_line
from review.intake.preparation import prepare
from review.services import Services, current_services
from review.settings import SettingsError

policy_cli = AppGroup("policy", help="The risk policy: check a file, try a deferral on it.")

FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


@policy_cli.command("check")
@click.argument("file", required=False, type=FILE)
def policy_check(file: Path | None) -> None:
    """Load FILE (default: the configured policy); exit 1 naming the first error's line."""
    settings = current_services().settings
    try:
        policy = policy_from_settings(settings, file)
    except SettingsError as exc:
        _fail(str(exc))
        return
    missing = _missing_group(policy, file or settings.policy_path)
    if missing:
        _fail(missing)
        return
    deciding = {o: sum(r.outcome == o for r in policy.rules) for o in ("allow", "ask", "deny")}
    click.echo(
        f"{file or settings.policy_path}: {len(policy.rules)} rules "
        f"({deciding['deny']} deny, {deciding['ask']} ask, {deciding['allow']} allow); "
        f"allow up to {policy.auto_allow_max_level}; {policy.version}"
    )


@policy_cli.command("test")
@click.argument("deferral", type=FILE)
@click.option("--policy", "policy_file", type=FILE, help="Try this policy file instead.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--agent", help="As this agent's deferral: its pact and its own rules apply.")
def policy_test(deferral: Path, policy_file: Path | None, as_json: bool, agent: str | None) -> None:
    """Score DEFERRAL.json (a deferral request, as an agent sends it) without storing it."""
    svc = current_services()
    try:
        body = json.loads(deferral.read_text(encoding="utf-8"))
        validate("DeferralRequest", body)
    except (ValueError, UnicodeDecodeError) as exc:
        _fail(f"{deferral}: not JSON ({exc})")
        return
    except InvalidRequest as exc:
        details = "; ".join(f"{d['path']} {d['message']}" for d in exc.details)
        _fail(f"{deferral}: not a deferral request: {details}")
        return
    if policy_file is not None:
        try:
            svc = _with_policy(svc, policy_file)
        except SettingsError as exc:
            _fail(str(exc))
            return
    prepared = prepare(svc, body, agent)
    ev = prepared.evaluation
    result = {
        "score": ev.score,
        "level": ev.level,
        "factors": ev.factors,
        "outcome": ev.outcome,
        "rule": ev.rule,
        "route": prepared.routed.audit if prepared.routed else None,
        "policy_version": ev.policy_version,
    }
    if as_json:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    click.echo(f"score    {ev.score} ({ev.level})")
    click.echo("factors  none" if not ev.factors else "factors")
    for f in ev.factors:
        click.echo(f"  {f['points']:+4d}  {f['rule']}: {f['detail']}")
    click.echo(f"outcome  {ev.outcome}" + (f" (rule {ev.rule})" if ev.rule else ""))
    click.echo(f"route    {_route_line(result['route'])}")
    click.echo(f"policy   {ev.policy_version}")


def _route_line(route: dict | None) -> str:
    if not route:
        return "any reviewer, 1 approval"
    who = f"group {route['group']}" if route["group"] else "any reviewer"
    if route["rule"]:
        who += f" (rule {route['rule']})"
    n = route["required_approvals"]
    line = f"{who}, {n} approval{'s' if n != 1 else ''}"
    if route.get("fallback"):
        line += f"; {route['fallback']}"
    return line


def _missing_group(policy: Policy, path: Path) -> str | None:
    """`FILE:LINE: reason` for the first rule routing to a group that does not exist."""
    named = {r.group for r in policy.rules if r.group}
    if not named:
        return None
    with current_services().db.read() as session:
        known = set(session.scalars(select(Group.name).where(Group.name.in_(named))))
    for index, rule in enumerate(policy.rules):
        if rule.group and rule.group not in known:
            text = path.read_text(encoding="utf-8")
            line = rule_line(text, index, "group")
            return (
                f"risk policy {path}:{line}: rule {rule.id!r}: no reviewer group "
                f"{rule.group!r} exists (create it with `flask groups create`); intake "
                "would let any reviewer claim what it routes"
            )
    return None


def _with_policy(svc: Services, path: Path) -> Services:
    """The services with another policy: a copy, so the app's own is never touched."""
    return replace(svc, policy=policy_from_settings(svc.settings, path))
