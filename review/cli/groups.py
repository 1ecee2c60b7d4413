"""The `groups` commands: reviewer groups that policy rules route to (PROTOCOL.md section 10)."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from review import groups
from review.cli.output import fail
from review.errors import DomainError
from review.services import current_services

groups_cli = AppGroup("groups", help="Reviewer groups: who may claim what a rule routes to them.")


@groups_cli.command("create")
@click.argument("name")
def groups_create(name: str) -> None:
    """Create the group NAME, with no members."""
    try:
        with current_services().db.write() as session:
            groups.create_group(session, name)
    except DomainError as exc:
        fail(str(exc))
    click.echo(f"created group {name}")


@groups_cli.command("add")
@click.argument("name")
@click.argument("user")
def groups_add(name: str, user: str) -> None:
    """Put USER in the group NAME."""
    try:
        with current_services().db.write() as session:
            added = groups.add_member(session, name, user)
    except DomainError as exc:
        fail(str(exc))
    click.echo(f"added {user} to {name}" if added else f"{user} was already in {name}")


@groups_cli.command("remove")
@click.argument("name")
@click.argument("user")
def groups_remove(name: str, user: str) -> None:
    """Take USER out of the group NAME."""
    try:
        with current_services().db.write() as session:
            removed = groups.remove_member(session, name, user)
    except DomainError as exc:
        fail(str(exc))
    click.echo(f"removed {user} from {name}" if removed else f"{user} was not in {name}")


@groups_cli.command("list")
def groups_list() -> None:
    """Every group and its members, one group a line (tab-separated, members comma-separated)."""
    with current_services().db.read() as session:
        listing = groups.list_groups(session)
    if not listing:
        click.echo("no groups")
    for group in listing:
        click.echo(f"{group.name}\t{','.join(group.members) or '-'}")
