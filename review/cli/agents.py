"""The `agents` commands: register, list, the kill switch, AAP tokens (PROTOCOL.md 7, 12)."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from review.agents import killswitch
from review.agents.administration import register_agent
from review.agents.registry import list_agents
from review.cli.output import fail
from review.errors import DomainError
from review.services import current_services
from review.users import find_user

agents_cli = AppGroup("agents", help="Registered agent runtimes.")


@agents_cli.command("create")
@click.argument("slug")
@click.option("--owner", "owners", multiple=True, required=True, help="A user who owns it (DRI).")
@click.option("--callback-url", default=None, help="Where decisions are POSTed.")
@click.option("--name", default=None, help="A display name (default: the slug).")
def agents_create(slug: str, owners: tuple[str, ...], callback_url: str | None, name: str | None):
    """Register an agent; its signing secret is printed once, as the last line."""
    try:
        created = register_agent(
            current_services(), slug, list(owners), name=name, callback_url=callback_url
        )
    except DomainError as exc:
        fail(str(exc))
    click.echo(f"created agent {slug}, owned by {', '.join(owners)}")
    click.echo("its signing secret follows; it is not shown again:")
    click.echo(created.secret)


@agents_cli.command("list")
def agents_list() -> None:
    """Every agent with its state, owners, callback URL and secret fingerprints."""
    svc = current_services()
    with svc.db.read() as session:
        agents = list_agents(session)
        if not agents:
            click.echo("no agents")
        for agent in agents:
            owners = ",".join(u.username for u in agent.owners)
            prints = ",".join(s.fingerprint for s in agent.secrets)
            click.echo(
                f"{agent.slug}\t{agent.state}\towners={owners}\t"
                f"callback={agent.callback_url or '-'}\tsecrets={prints}"
            )


@agents_cli.command("aap-token")
@click.argument("slug")
def agents_aap_token(slug: str) -> None:
    """A new bearer token for the AAP door (/aap), printed once as the last line; the
    agent's earlier tokens keep working for COUNTERSIGN_SECRET_OVERLAP."""
    from review.doors.aap.tokens import issue_agent_token

    try:
        token = issue_agent_token(current_services(), slug)
    except DomainError as exc:
        fail(str(exc))
    click.echo(f"a new AAP token for {slug} (earlier ones keep working for the overlap)")
    click.echo("it follows; it is not shown again:")
    click.echo(token)


def _flip(action: str, slug: str, by: str, reason: str) -> None:
    svc = current_services()
    try:
        actor = killswitch.authorise(svc, slug, by, action)
        if action == "kill":
            flip = killswitch.kill(svc, slug, actor, reason)
        else:
            flip = killswitch.revive(svc, slug, actor, reason)
    except DomainError as exc:
        fail(str(exc))
    if not flip.changed:
        state = "killed" if action == "kill" else "active"
        click.echo(f"{slug} was already {state}: nothing changed")
    elif action == "kill":
        click.echo(f"killed {slug}: intake refused, {flip.ended} undecided deferrals ended")
    else:
        click.echo(f"revived {slug}: intake open again (killed deferrals stay killed)")


@agents_cli.command("kill")
@click.argument("slug")
@click.option("--by", required=True, help="Who flips it: an owner of the agent or an admin.")
@click.option("--reason", required=True, help="Why; the agent and the audit log get it.")
def agents_kill(slug: str, by: str, reason: str) -> None:
    """Flip the agent's kill switch: intake stops, undecided deferrals end, it is told."""
    _flip("kill", slug, by, reason)


@agents_cli.command("revive")
@click.argument("slug")
@click.option("--by", required=True, help="Who flips it: an owner of the agent or an admin.")
@click.option("--reason", required=True, help="Why; the agent and the audit log get it.")
def agents_revive(slug: str, by: str, reason: str) -> None:
    """Turn the kill switch off again; deferrals that were killed stay killed."""
    _flip("revive", slug, by, reason)


def _admin(by: str, action: str) -> killswitch.Actor:
    svc = current_services()
    with svc.db.read() as session:
        user = find_user(session, by)
    if user is None or user.role != "admin" or not user.is_active:
        fail(f"{by} may not {action}: only admins may")
    return killswitch.Actor("user", by)


@agents_cli.command("stop-all")
@click.option("--by", required=True, help="An admin.")
@click.option("--reason", required=True, help="The incident, for the agents and the audit log.")
def agents_stop_all(by: str, reason: str) -> None:
    """Kill every active agent at once (an incident), audited as one action."""
    actor = _admin(by, "stop every agent")
    try:
        flips = killswitch.stop_all(current_services(), actor, reason)
    except DomainError as exc:
        fail(str(exc))
    stopped = [f for f in flips if f.changed]
    click.echo(
        f"stopped {len(stopped)} agents ({', '.join(f.slug for f in stopped) or 'none'}); "
        f"{sum(f.ended for f in stopped)} undecided deferrals ended"
    )


@agents_cli.command("revive-all")
@click.option("--by", required=True, help="An admin.")
@click.option("--reason", required=True, help="Why, for the agents and the audit log.")
def agents_revive_all(by: str, reason: str) -> None:
    """Revive every killed agent (revive them one by one with `agents revive` instead)."""
    actor = _admin(by, "revive every agent")
    try:
        flips = killswitch.revive_all(current_services(), actor, reason)
    except DomainError as exc:
        fail(str(exc))
    click.echo(f"revived {len(flips)} agents ({', '.join(f.slug for f in flips) or 'none'})")
