"""Alembic environment: the URL and connection come from Countersign's own settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

import review.doors.aap.tables  # noqa: F401  (the AAP door's tables join Base's metadata)
import review.groups  # noqa: F401  (so do the reviewer groups')
import review.notifications.models  # noqa: F401  (and the notifications')
from review.models import Base

config = context.config
target_metadata = Base.metadata


def _database_url() -> str:
    """The URL Countersign passed in, else the app's own (DATABASE_URL, as the app reads it).

    The second case is the stock `alembic -c alembic.ini ...` from the project root.
    """
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from review.settings import load_settings

    return load_settings().database_url


def run_migrations_offline() -> None:
    context.configure(
        url=_database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(_database_url())
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
