"""Alembic, driven from the app's settings (no alembic.ini to keep in step)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from review.bundled import bundled
from review.db import Database


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(bundled("migrations")))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade(db: Database, revision: str = "head") -> None:
    cfg = alembic_config(db.url)
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def downgrade(db: Database, revision: str) -> None:
    cfg = alembic_config(db.url)
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def revision(db: Database, message: str) -> None:
    """Autogenerate a new migration from the models (for developers)."""
    cfg = alembic_config(db.url)
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.revision(cfg, message=message, autogenerate=True)


def head_revision() -> str:
    """The newest migration in migrations/versions/ (there is one head)."""
    head = ScriptDirectory.from_config(alembic_config("")).get_current_head()
    assert head is not None, "migrations/versions/ has no migrations"
    return head


def current_revision(db: Database) -> str | None:
    """The revision the database is at; None for a database with no schema yet.

    Read straight from Alembic's table (MigrationContext would log two lines each time,
    and /readyz asks every few seconds).
    """
    with db.engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.scalar(text("SELECT version_num FROM alembic_version"))


def history() -> list[tuple[str, str]]:
    """Every migration as (revision, the first line of its docstring), oldest first."""
    script = ScriptDirectory.from_config(alembic_config(""))
    revisions = reversed(list(script.walk_revisions()))
    return [(rev.revision, (rev.doc or "").partition("\n")[0]) for rev in revisions]
