"""The `users` commands: reviewers, admins and auditors (PROTOCOL.md sections 7 and 15)."""

from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from review import users
from review.cli.output import fail
from review.errors import DomainError
from review.services import current_services
from review.users import create_user

users_cli = AppGroup("users", help="Reviewers, admins and auditors.")


@users_cli.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(["admin", "reviewer", "auditor"]), required=True)
@click.option("--email", default=None, help="Also counts as the user's identity as a principal.")
def users_create(name: str, role: str, email: str | None) -> None:
    """Create a user; the password is read from stdin (one line)."""
    password = sys.stdin.readline().rstrip("\r\n")
    svc = current_services()
    try:
        with svc.db.write() as session:
            create_user(session, name, role, password, email=email)
    except DomainError as exc:
        fail(str(exc))
    click.echo(f"created {role} {name}")


@users_cli.command("list")
def users_list() -> None:
    """Every user with their role, whether they may log in, and their email."""
    svc = current_services()
    with svc.db.read() as session:
        people = users.list_users(session)
        if not people:
            click.echo("no users")
        for user in people:
            state = "active" if user.is_active else "disabled"
            click.echo(f"{user.username}\t{user.role}\t{state}\temail={user.email or '-'}")


@users_cli.command("set-password")
@click.argument("name")
def users_set_password(name: str) -> None:
    """Give NAME a new password, read from stdin (one line); their sessions end."""
    password = sys.stdin.readline().rstrip("\r\n")
    svc = current_services()
    try:
        with svc.db.write() as session:
            users.set_password(session, name, password)
    except DomainError as exc:
        fail(str(exc))
    click.echo(f"new password for {name}; their sessions have ended")


@users_cli.command("set-email")
@click.argument("name")
@click.argument("address")
def users_set_email(name: str, address: str) -> None:
    """Set NAME's e-mail address (where notifications reach them); "" clears it."""
    svc = current_services()
    try:
        with svc.db.write() as session:
            users.set_email(session, name, address)
    except DomainError as exc:
        fail(str(exc))
    click.echo(f"{name}'s e-mail is now {address.strip() or 'none'}")


@users_cli.command("disable")
@click.argument("name")
def users_disable(name: str) -> None:
    """NAME can no longer log in; their sessions end at their next request."""
    svc = current_services()
    try:
        with svc.db.write() as session:
            changed = users.disable_user(session, name)
    except DomainError as exc:
        fail(str(exc))
    click.echo(
        f"disabled {name}; their sessions have ended" if changed else f"{name} was already disabled"
    )


@users_cli.command("enable")
@click.argument("name")
def users_enable(name: str) -> None:
    """NAME may log in again."""
    svc = current_services()
    try:
        with svc.db.write() as session:
            changed = users.enable_user(session, name)
    except DomainError as exc:
        fail(str(exc))
    click.echo(f"enabled {name}" if changed else f"{name} was already enabled")


@users_cli.command("set-role")
@click.argument("name")
@click.argument("role", type=click.Choice(["admin", "reviewer", "auditor"]))
def users_set_role(name: str, role: str) -> None:
    """Give NAME the role ROLE; their sessions end (they log in again with the new role)."""
    svc = current_services()
    try:
        with svc.db.write() as session:
            changed = users.set_role(session, name, role)
    except DomainError as exc:
        fail(str(exc))
    click.echo(
        f"{name} is now {role}; their sessions have ended"
        if changed
        else f"{name} was already {role}"
    )
