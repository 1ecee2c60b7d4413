"""Migrations: `db upgrade` builds the schema on SQLite and PostgreSQL, and goes back down."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Index, inspect, text
from sqlalchemy.schema import CreateIndex

# Every table joins Base's metadata, as migrations/env.py has them join it.
import review.doors.aap.tables  # noqa: F401
import review.groups  # noqa: F401
import review.notifications.models  # noqa: F401
from review.app_factory import create_app
from review.db import Database
from review.migrate import downgrade, upgrade
from review.models import Base

TABLES = {
    "users",
    "agents",
    "agent_owners",
    "agent_secrets",
    "deferrals",
    "audit_events",
    "audit_head",
    "audit_epochs",
    "alembic_version",
}


def test_db_upgrade_creates_every_table_from_nothing(empty_database_url, settings_overrides):
    app = create_app({**settings_overrides, "database_url": empty_database_url})
    try:
        result = app.test_cli_runner().invoke(args=["db", "upgrade"])
        assert result.exit_code == 0, result.output
        engine = app.extensions["countersign"].db.engine
        assert set(inspect(engine).get_table_names()) >= TABLES
        with engine.connect() as conn:
            shards = conn.execute(text("SELECT shards FROM audit_epochs")).scalar_one()
            heads = conn.execute(text("SELECT shard, seq, hash FROM audit_head ORDER BY shard"))
            assert heads.all() == [(s, 0, "0" * 64) for s in range(shards)]
    finally:
        app.extensions["countersign"].close()


def test_migrations_go_down_to_nothing_and_up_again(empty_database_url):
    db = Database(empty_database_url)
    try:
        upgrade(db)
        downgrade(db, "base")
        assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
        upgrade(db)
        assert set(inspect(db.engine).get_table_names()) >= TABLES
    finally:
        db.dispose()


def test_the_migrated_schema_is_the_one_the_models_describe(empty_database_url):
    """Alembic's autogenerate finds nothing to add: every table, column and index of the
    models (review/models/ and the other modules migrations/env.py imports) is in the
    migrations, under the same names, and nothing more."""
    db = Database(empty_database_url)
    try:
        upgrade(db)
        with db.engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert differences == []
    finally:
        db.dispose()


def _partial_indexes() -> list[Index]:
    return [
        ix
        for table in Base.metadata.tables.values()
        for ix in table.indexes
        if ix.dialect_options["sqlite"]["where"] is not None
        or ix.dialect_options["postgresql"]["where"] is not None
    ]


def test_the_migrated_partial_indexes_hold_the_rows_the_models_say(empty_database_url):
    """Autogenerate does not compare an index's WHERE: the migrated index's condition is
    the model's, as each database keeps it (SQLite its text, PostgreSQL its parse)."""
    db = Database(empty_database_url)
    try:
        upgrade(db)
        partial = _partial_indexes()
        assert {ix.name for ix in partial} >= {
            "ix_deferrals_claimed_by_status",
            "ix_deferrals_status_lease",
            "ix_deferrals_handed_to",
            "ix_deferrals_resource",
            "ix_audit_events_agent_type_seq",
        }
        with db.engine.connect() as conn:
            for ix in partial:
                model = str(CreateIndex(ix).compile(dialect=conn.dialect))
                if conn.dialect.name == "sqlite":
                    migrated = conn.exec_driver_sql(
                        "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?",
                        (ix.name,),
                    ).scalar_one()
                    assert migrated == model.strip()
                    continue
                # The model's index built beside the migrated one, then both read back.
                with conn.begin() as tx:
                    conn.exec_driver_sql(model.replace(ix.name, "model_" + ix.name, 1))
                    conditions = conn.execute(
                        text(
                            "SELECT c.relname, pg_get_expr(i.indpred, i.indrelid)"
                            " FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                            " WHERE c.relname IN (:name, :model)"
                        ),
                        {"name": ix.name, "model": "model_" + ix.name},
                    ).all()
                    tx.rollback()
                assert len(conditions) == 2 and conditions[0][1] == conditions[1][1] is not None
    finally:
        db.dispose()


def test_sqlite_runs_in_wal_mode_with_full_sync_and_a_busy_timeout(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        db.dispose()
