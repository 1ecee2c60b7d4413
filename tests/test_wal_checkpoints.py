"""SQLite's WAL is checkpointed by a background thread, not inside a writer's commit
(review/wal_checkpoints.py): writers queue on one lock, and a checkpoint inside a
commit held all of them."""

import time

from sqlalchemy import text

from review import wal_checkpoints
from review.db import Database


def _database(tmp_path) -> Database:
    db = Database(f"sqlite:///{tmp_path / 'wal.db'}")
    with db.write() as session:
        session.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"))
    return db


def _wait_for(predicate, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_writes_are_checkpointed_in_the_background_and_not_inline(tmp_path):
    db = _database(tmp_path)
    try:
        with db.engine.connect() as conn:
            inline = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
        assert inline == wal_checkpoints.INLINE_PAGES
        for _ in range(2 * wal_checkpoints.EVERY_COMMITS):
            with db.write() as session:
                session.execute(text("INSERT INTO notes (body) VALUES (:b)"), {"b": "x" * 500})
        assert _wait_for(lambda: db.checkpointer.checkpoints >= 1)
        busy, frames, copied = db.checkpointer.last
        assert busy == 0 and copied > 0
    finally:
        db.dispose()


def test_a_checkpoint_does_not_wait_for_the_writer_holding_the_lock(tmp_path):
    db = _database(tmp_path)
    try:
        with db.write() as session:  # holds the writer lock and SQLite's write lock
            session.execute(text("INSERT INTO notes (body) VALUES ('held')"))
            db.checkpointer.request()
            assert _wait_for(lambda: db.checkpointer.checkpoints >= 1)
        with db.read() as session:
            assert session.execute(text("SELECT count(*) FROM notes")).scalar() == 1
    finally:
        db.dispose()
