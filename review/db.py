"""Engines and sessions.

SQLite runs in WAL mode with `synchronous=FULL` (a committed decision survives power
loss) and a busy timeout. pysqlite's own transaction handling is switched off so we
can say `BEGIN IMMEDIATE` for transactions that write: a writer takes the write lock
up front instead of upgrading a read lock later (which can deadlock under
concurrency). Read-only work uses plain deferred transactions, so readers never
queue behind writers.

PostgreSQL runs at READ COMMITTED; the conditional updates and row locks in the
domain do the rest.
"""

from __future__ import annotations

import contextvars
import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, InvalidatePoolError
from sqlalchemy.orm import Session, sessionmaker

from review import wal_checkpoints
from review.commit_groups import CommitGroups
from review.driver_statements import driver

IDLE = 0  # libpq's PQTRANS_IDLE (psycopg.pq.TransactionStatus.IDLE): no transaction open

SQLITE_BUSY_TIMEOUT_MS = 10_000
T = TypeVar("T")


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        )
        _configure_sqlite(engine)
        return engine
    engine = create_engine(url, pool_size=10, max_overflow=20)
    _ping_on_checkout(engine)
    return engine


# Set by a caller that retries on a dropped connection itself (intake's one call).
_unpinged = contextvars.ContextVar("countersign_unpinged", default=False)


def _ping_on_checkout(engine: Engine) -> None:
    """`pool_pre_ping`, as a checkout event that `autocommit_driver(ping=False)` skips.

    A connection the server dropped while it sat in the pool (a restart, a failover,
    `pg_terminate_backend`) is found before it is handed out, and the pool's older
    connections with it, as pre-ping does (InvalidatePoolError). Through gunicorn the
    ping was a fifth of a PostgreSQL intake's time in its thread (py-spy): one more
    round trip, after which the thread queues for the GIL again.
    """

    @event.listens_for(engine, "checkout")
    def ping(dbapi_connection, _record, _proxy):
        if _unpinged.get():
            return
        dialect = engine.dialect
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as error:
            if dialect.is_disconnect(error, dbapi_connection, None):
                raise InvalidatePoolError() from error
            raise


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Checkpoints run in the background (review/wal_checkpoints.py); the inline one, in
        # a commit, resets the WAL and finds most of it copied already.
        cursor.execute(f"PRAGMA wal_autocheckpoint={wal_checkpoints.INLINE_PAGES}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn):
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        # On the driver: every transaction begins here, and exec_driver_sql would run
        # SQLAlchemy's whole execution path for a statement with nothing to process.
        conn.connection.dbapi_connection.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")


class WriterLock:
    """Queue SQLite writers in the kernel instead of in SQLite's busy handler.

    Waiting writers inside SQLite poll with sleeps of up to 100 ms, which turns a
    busy moment into a long tail. A thread lock (this process) and an flock on a file
    beside the database (other processes: gunicorn workers, the rq worker) make
    writers wait their turn and wake the moment the previous one commits.
    """

    def __init__(self, path: str):
        self.path = path
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        self._pid = 0

    @contextmanager
    def held(self) -> Iterator[None]:
        with self._thread_lock:
            if self._fd is None or self._pid != os.getpid():  # new process: own descriptor
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                self._pid = os.getpid()
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)


class Notes:
    """What a `write_core()` transaction notes for the `after_commit` hooks: an `info`
    dict, as `write()`'s session carries, so the `note_*` functions
    (review/callbacks/wakeups.py, review/observability/metrics.py) take either."""

    __slots__ = ("info",)

    def __init__(self) -> None:
        self.info: dict[str, Any] = {}


class Database:
    """The engine and the two kinds of session the app uses."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        writer = self._core_writer = self.engine.execution_options(sqlite_immediate=True)
        self._reader = sessionmaker(self.engine, expire_on_commit=False)
        self._writer = sessionmaker(writer, expire_on_commit=False)
        path = self.engine.url.database if self.is_sqlite else None
        on_file = bool(path and path != ":memory:")
        self._writer_lock = WriterLock(path + "-writer.lock") if on_file else None
        self.checkpointer = wal_checkpoints.WalCheckpointer(path) if on_file else None
        self.commit_groups = (
            CommitGroups(self._writer_lock.held, self._immediate_transaction, Notes)
            if self._writer_lock is not None
            else None
        )
        self._after_commit: list[Callable[[dict[str, Any]], None]] = []
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._one_statement_reader = sessionmaker(self._autocommit, expire_on_commit=False)

    def after_commit(self, hook: Callable[[dict[str, Any]], None]) -> None:
        """Call `hook(info)` after each write commits and its locks are released.

        Domain code leaves notes in `info` (which deferrals ended, which callbacks were
        queued): `write()`'s session's, or the `Notes` of a `write_core()`; the hook turns
        them into wake-ups. A rolled-back write calls nothing.
        """
        self._after_commit.append(hook)

    def run_after_commit(self, info: dict[str, Any]) -> None:
        """The `after_commit` hooks on a committed write's notes: `write()`'s session's
        `info`, or `write_core()`'s `Notes`. No notes, nothing to call."""
        if info:
            for hook in self._after_commit:
                hook(info)

    def session(self) -> Session:
        """A session for reading (and for writes that will call `write()` to begin)."""
        return self._reader()

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One transaction that changes state: commits at the end, rolls back on error.

        On SQLite it begins IMMEDIATE, so it holds the write lock from its first statement,
        after waiting its turn on the writer lock. Writes must not nest.
        """
        if self._writer_lock is None:
            with self._writer() as session, session.begin():
                yield session
        else:
            with self._writer_lock.held(), self._writer() as session, session.begin():
                yield session
            self.checkpointer.committed()  # type: ignore[union-attr]  (set with the lock)
        self.run_after_commit(session.info)

    @contextmanager
    def write_core(self) -> Iterator[tuple[Connection, Notes]]:
        """`write()` without the ORM session, for a write of Core statements only (SQLite's
        intake and prepared decision): a connection in one transaction, IMMEDIATE on
        SQLite, after the writer lock. The session's begin, commit and close were a third
        of the Python an intake spent holding SQLite's write lock. The write notes in the
        `Notes` it is given with the connection, as in a session's `info`; once it commits,
        the `after_commit` hooks run on them, as after `write()`. A rolled-back write
        calls nothing.
        """
        notes = Notes()
        if self._writer_lock is None:
            with self._core_writer.connect() as conn, conn.begin():
                yield conn, notes
        else:
            with self._writer_lock.held(), self._core_writer.connect() as conn, conn.begin():
                yield conn, notes
            self.checkpointer.committed()  # type: ignore[union-attr]  (set with the lock)
        self.run_after_commit(notes.info)

    @contextmanager
    def _immediate_transaction(self) -> Iterator[Connection]:
        with self._core_writer.connect() as conn, conn.begin():
            yield conn

    def write_grouped(self, work: Callable[[Connection, Notes], T]) -> T:
        """`work(conn, notes)` as one write, as in `write_core()`, whose commit on a SQLite
        file is shared with the writes of this process queued behind the writer lock at
        the same moment (review/commit_groups.py): each in a savepoint of its own, all
        committed by one fsync. Returns what `work` returned, once it is committed, and
        raises what it raised (rolled back to its savepoint), or the group's commit's
        error. The after-commit hooks run on its notes here, in the caller's thread.
        `work` may run in another caller's thread: it must use only what it is given.
        """
        if self.commit_groups is None:
            with self.write_core() as (conn, notes):
                result = work(conn, notes)
            return result
        write, committed = self.commit_groups.write(work)
        if committed:
            self.checkpointer.committed(committed)  # type: ignore[union-attr]
        if write.error is not None:
            raise write.error
        self.run_after_commit(write.notes.info)
        return write.result  # type: ignore[return-value]

    @contextmanager
    def autocommit(self) -> Iterator[Connection]:
        """A connection on which each statement is its own transaction.

        For PostgreSQL functions that make a whole state change in one call (intake's,
        migration 0008): no BEGIN and COMMIT round trips, no lock held across them.
        """
        with self._autocommit.connect() as conn:
            yield conn

    @contextmanager
    def autocommit_driver(self, *, ping: bool = True) -> Iterator[Any]:
        """`autocommit()` on the driver: the pooled DBAPI connection itself (psycopg's),
        switched to autocommit for the block and back before it returns to the pool.

        For intake's one call (review/intake/deferrals.py): a statement through
        SQLAlchemy's `execute` (its context, events, result and the connection's begin
        and rollback bookkeeping) cost intake as much Python as the rest of its write.
        The checkout is the pool's own; `ping=False` skips its ping (`_ping_on_checkout`),
        for a caller that runs the block again when the connection turns out dropped
        (`DBAPIError.connection_invalidated`). Run statements with `execute_on_driver`,
        which raises what `conn.execute` would (IntegrityError and the rest).
        """
        skipped = _unpinged.set(not ping)
        try:
            fairy = self.engine.raw_connection()
        finally:
            _unpinged.reset(skipped)
        dbapi_connection = fairy.driver_connection
        dropped = False
        try:
            dbapi_connection.autocommit = True
            yield dbapi_connection
        except DBAPIError as error:
            dropped = error.connection_invalidated
            raise
        finally:
            if (
                dropped
                or dbapi_connection.closed
                or dbapi_connection.info.transaction_status != IDLE
            ):
                fairy.invalidate()  # dropped, or midway: never back into the pool
            else:  # a refused statement (a unique key) leaves it idle and usable
                dbapi_connection.autocommit = False
            fairy.close()

    def call_unpinged(self, sql: str, params: dict[str, Any]) -> Any:
        """One statement in its own transaction (a server function's call: intake's, a
        decision's) on the driver: its first row. On a pooled connection taken without the
        pool's ping; one the server dropped fails the call, which runs again on a pinged
        connection. The caller's statement must be safe to run again when its first run
        committed and the answer was lost (intake: the webhook-id's unique key; a
        decision: the deferral found ended)."""
        try:
            with self.autocommit_driver(ping=False) as conn:
                return self.execute_on_driver(conn, sql, params)
        except DBAPIError as error:
            if not error.connection_invalidated:
                raise
        with self.autocommit_driver() as conn:
            return self.execute_on_driver(conn, sql, params)

    def execute_on_driver(self, dbapi_connection: Any, sql: str, params: dict[str, Any]) -> Any:
        """One statement on a connection from `autocommit_driver`: its first row."""
        return self._driver_cursor(dbapi_connection, sql, params).fetchone()

    def _driver_cursor(self, dbapi_connection: Any, sql: str, params: Any) -> Any:
        """One statement on a DBAPI connection: its cursor. Raises what `conn.execute`
        would (IntegrityError and the rest), a dropped connection's marked as such."""
        dialect = self.engine.dialect
        dbapi = dialect.loaded_dbapi
        try:
            return dbapi_connection.execute(sql, params)
        except dbapi.Error as error:  # as conn.execute raises it
            dropped = dialect.is_disconnect(error, dbapi_connection, None)
            raise DBAPIError.instance(
                sql, params, error, dbapi.Error, connection_invalidated=dropped
            ) from error

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._reader() as session, session.begin():
            yield session

    def read_unpinged(self, reading: Callable[[Session], T]) -> T:
        """`reading(session)` for a read of ONE statement: on PostgreSQL without the
        round trips a transaction costs (autocommit: no BEGIN, no COMMIT) and without the
        pool's ping; a connection the server dropped fails the read, which runs again on
        a pinged one (a read is safe to repeat). SQLite: `read()`.

        One statement is its own snapshot, so nothing is lost by the missing BEGIN; a
        read of several statements wants `read()`, whose statements share a transaction.
        For the prepared decision's read (review/reviewing/prepared_decisions.py)."""
        if self.is_sqlite:
            with self.read() as session:
                return reading(session)
        skipped = _unpinged.set(True)
        try:
            with self._one_statement_reader() as session:
                return reading(session)
        except DBAPIError as error:
            if not error.connection_invalidated:
                raise
        finally:
            _unpinged.reset(skipped)
        with self._one_statement_reader() as session:
            return reading(session)

    def first_row_unpinged(self, statement: Any, params: dict[str, Any]) -> Any:
        """`read_unpinged` for one Core SELECT: its first row, or None, as
        `conn.execute(statement, params).first()` reads it (review/driver_statements.py
        `Reading`: the same values, by position or by column name), run on the driver, as
        intake's call is: SQLAlchemy's connection, execution context and result cost the
        request several times the statement. On PostgreSQL in autocommit on a pooled
        connection taken without the pool's ping, run again on a pinged one when the
        server had dropped it (a read is safe to repeat). On SQLite on the pooled
        connection outside any transaction (pysqlite's own handling is off): one
        statement, its own snapshot. For the prepared decision's read
        (review/reviewing/prepared_decisions.py)."""
        reading = driver.reading(self.engine, statement)
        args = reading.args(params)
        if self.is_sqlite:
            fairy = self.engine.raw_connection()
            try:
                return reading.first(
                    self._driver_cursor(fairy.driver_connection, reading.sql, args)
                )
            finally:
                fairy.close()
        try:
            with self.autocommit_driver(ping=False) as conn:
                return reading.first(self._driver_cursor(conn, reading.sql, args))
        except DBAPIError as error:
            if not error.connection_invalidated:
                raise
        with self.autocommit_driver() as conn:
            return reading.first(self._driver_cursor(conn, reading.sql, args))

    def dispose(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.close()
        self.engine.dispose()
