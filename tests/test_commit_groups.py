"""SQLite: writes queued on the writer lock at one moment share one commit, each in its
own savepoint (review/commit_groups.py), and each is still all or nothing."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from review.db import Database


@pytest.fixture
def db(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'groups.db'}")
    with database.write() as session:
        session.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT UNIQUE)"))
        session.execute(text("CREATE TABLE parents (id INTEGER PRIMARY KEY)"))
        session.execute(
            text(
                "CREATE TABLE children (id INTEGER PRIMARY KEY, parent INTEGER"
                " REFERENCES parents (id) DEFERRABLE INITIALLY DEFERRED)"
            )
        )
    yield database
    database.dispose()


def _note(body: str, then=None):
    def work(conn, notes):
        conn.exec_driver_sql("INSERT INTO notes (body) VALUES (?)", (body,))
        notes.info.setdefault("noted", []).append(body)
        if then is not None:
            then(conn)
        return body

    return work


def _queued_together(db: Database, works: list) -> list:
    """Run each work from a thread of its own while this test holds the writer lock, and
    let go once all of them are queued: the first to get the lock commits them all."""
    outcomes: list = [None] * len(works)

    def run(i, work):
        try:
            outcomes[i] = db.write_grouped(work)
        except Exception as error:
            outcomes[i] = error

    threads = [threading.Thread(target=run, args=(i, w)) for i, w in enumerate(works)]
    with db._writer_lock.held():
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while len(db.commit_groups._queued) < len(works) and time.monotonic() < deadline:
            time.sleep(0.01)
    for t in threads:
        t.join(10)
    return outcomes


def _bodies(db: Database) -> list[str]:
    with db.read() as session:
        return sorted(session.execute(text("SELECT body FROM notes")).scalars())


def test_writes_queued_at_one_moment_are_committed_together_in_the_order_they_queued(db):
    outcomes = _queued_together(db, [_note("a"), _note("b"), _note("c")])
    assert sorted(outcomes) == ["a", "b", "c"]
    assert (db.commit_groups.groups, db.commit_groups.writes) == (1, 3)
    assert _bodies(db) == ["a", "b", "c"]


def test_a_write_alone_commits_on_its_own_and_its_notes_reach_the_after_commit_hooks(db):
    seen = []
    db.after_commit(lambda info: seen.append(info.get("noted")))
    assert db.write_grouped(_note("alone")) == "alone"
    assert (db.commit_groups.groups, db.commit_groups.writes) == (1, 1)
    assert seen == [["alone"]]
    assert _bodies(db) == ["alone"]


def test_a_write_that_fails_is_rolled_back_alone_and_its_caller_gets_the_error(db):
    seen = []
    db.after_commit(lambda info: seen.append(info.get("noted")))

    def fail_after_writing(conn):
        conn.exec_driver_sql("INSERT INTO notes (body) VALUES ('a')")  # a duplicate: refused

    outcomes = _queued_together(db, [_note("a"), _note("b", then=fail_after_writing), _note("c")])
    assert outcomes[0] == "a" and outcomes[2] == "c"
    assert isinstance(outcomes[1], IntegrityError)
    assert _bodies(db) == ["a", "c"]  # b's own insert went with it
    assert sorted(seen) == [["a"], ["c"]]  # nothing b noted is woken


def test_a_commit_that_fails_fails_every_write_in_its_group_and_writes_nothing(db):
    seen = []
    db.after_commit(lambda info: seen.append(info.get("noted")))

    def orphan(conn):  # checked at COMMIT (deferred), after every savepoint was released
        conn.exec_driver_sql("INSERT INTO children (parent) VALUES (42)")

    outcomes = _queued_together(db, [_note("a"), _note("b", then=orphan), _note("c")])
    assert all(isinstance(o, IntegrityError) for o in outcomes), outcomes
    assert _bodies(db) == []
    assert seen == []
    assert db.write_grouped(_note("after")) == "after"  # the lock and the connection are fine
    assert _bodies(db) == ["after"]


def test_a_write_queued_while_a_group_commits_leads_the_next_group(db):
    late: dict = {}

    def queue_another(conn):  # runs inside the first group, before its commit
        def run():
            late["outcome"] = db.write_grouped(_note("late"))

        late["thread"] = threading.Thread(target=run)
        late["thread"].start()
        deadline = time.monotonic() + 10
        while not db.commit_groups._queued and time.monotonic() < deadline:
            time.sleep(0.01)

    assert db.write_grouped(_note("first", then=queue_another)) == "first"
    late["thread"].join(10)
    assert late["outcome"] == "late"
    assert (db.commit_groups.groups, db.commit_groups.writes) == (2, 2)
    assert _bodies(db) == ["first", "late"]
