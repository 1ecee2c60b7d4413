"""The `canaries` commands: seed known-bad test deferrals, list what became of them."""

from __future__ import annotations

import click
from flask.cli import AppGroup
from sqlalchemy import select

from review.canaries.kinds import KINDS
from review.canaries.listing import recent_canaries
from review.canaries.seeding import seed_canaries
from review.cli.output import fail
from review.errors import DomainError
from review.models import User
from review.services import current_services

canaries_cli = AppGroup(
    "canaries", help="Known-bad test deferrals that measure how reviewers catch them."
)


@canaries_cli.command("seed")
@click.option("--agent", "agent_slug", help="The agent it seems to come from (default: any).")
@click.option("--count", default=1, show_default=True, type=int, help="How many.")
@click.option("--kind", type=click.Choice(sorted(KINDS)), help="What it asks (default: any).")
@click.option("--by", "by", help="The admin seeding them, for the audit log (default: cli).")
def canaries_seed(agent_slug: str | None, count: int, kind: str | None, by: str | None) -> None:
    """Put known-bad deferrals in the queue, looking like the agent's own; one line each."""
    svc = current_services()
    actor = ("system", "cli")
    if by is not None:
        with svc.db.read() as session:
            role = session.scalar(select(User.role).where(User.username == by))
        if role != "admin":
            fail(f"{by} is not an admin")
        actor = ("user", by)
    try:
        seeded = seed_canaries(svc, actor, agent_slug=agent_slug, count=count, kind=kind)
    except DomainError as exc:
        fail(str(exc))
    for s in seeded:
        click.echo(f"{s.deferral_id}  {s.agent}  {s.kind}  {s.risk_level}  {s.summary}")


@canaries_cli.command("list")
@click.option("--limit", default=50, show_default=True, type=int)
def canaries_list(limit: int) -> None:
    """The newest canaries and what became of them."""
    svc = current_services()
    with svc.db.read() as session:
        rows = recent_canaries(session, limit)
    if not rows:
        click.echo("no canaries")
    for r in rows:
        by = f" by {r.decided_by}" if r.decided_by else ""
        click.echo(f"{r.deferral_id}  {r.agent}  {r.kind}  {r.outcome}{by}")
