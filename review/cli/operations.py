"""The service's own commands: `db upgrade|downgrade|current|history|revision`, `worker`
and `serve`."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from review.services import current_services

db_cli = AppGroup("db", help="Create or migrate the schema.")


@db_cli.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Create the schema, or migrate it to REVISION (default: the newest)."""
    svc = current_services()
    from review import migrate  # alembic is only needed here

    migrate.upgrade(svc.db, revision)
    click.echo(f"database at {revision} ({svc.db.engine.dialect.name})")


@db_cli.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Migrate the schema back to REVISION (`base` removes it all)."""
    from review import migrate  # alembic is only needed here

    migrate.downgrade(current_services().db, revision)
    click.echo(f"database at {revision}")


@db_cli.command("current")
def db_current() -> None:
    """The revision the database is at, and whether that is the newest (head)."""
    from review import migrate  # alembic is only needed here

    current = migrate.current_revision(current_services().db)
    head = migrate.head_revision()
    if current is None:
        click.echo(f"no schema (head is {head}); run `db upgrade`")
    elif current == head:
        click.echo(f"{current} (head)")
    else:
        click.echo(f"{current} (head is {head}; run `db upgrade`)")


@db_cli.command("history")
def db_history() -> None:
    """Every migration, oldest first; the database's current one is marked."""
    from review import migrate  # alembic is only needed here

    current = migrate.current_revision(current_services().db)
    for revision, message in migrate.history():
        mark = "  <- current" if revision == current else ""
        click.echo(f"{revision}  {message}{mark}")


@db_cli.command("revision")
@click.option("-m", "--message", required=True)
def db_revision(message: str) -> None:
    """Write a new migration from the difference between the models and the database."""
    from review import migrate  # alembic is only needed here

    migrate.revision(current_services().db, message)


@click.command("worker")
@click.option("--burst", is_flag=True, help="Exit once the queues are empty.")
def worker(burst: bool) -> None:
    """Run the rq worker (with rq's scheduler) on Countersign's queues."""
    from approval_queue.worker import run_worker

    run_worker(current_services(), burst=burst)


@click.command("serve")
@click.option("--host", default="127.0.0.1")
@click.option("--port", default=5000, type=int)
@click.option("--workers", default=2, type=int, help="gunicorn worker processes")
def serve(host: str, port: int, workers: int) -> None:
    """Everything at once, for a laptop: migrate, then web (gunicorn) and the worker."""
    from review.devserver import run_all

    run_all(current_services(), host=host, port=port, workers=workers)
