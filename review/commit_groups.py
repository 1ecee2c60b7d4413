"""SQLite: the writes queued on the writer lock share one commit (a group commit).

With `synchronous=FULL` every commit fsyncs the WAL, and on SQLite the commit is made
while the writer holds the lock every other writer queues on (review/db.py WriterLock).
Through gunicorn, an intake held the lock 4.6 ms on average, 3.9 ms of it in its commit
(the fsync), and the slowest 1% of intakes spent 97 ms waiting for the lock behind the
other threads' commits (docs/SCALING.md, "Intake's tail, session 10"). So the writes
of one process that are waiting for the lock are made by whichever of them gets it
first, each in a savepoint of its own, and committed once:

- each write is still all or nothing with its audit events: a write that raises is
  rolled back to its savepoint, the others go on, and the error is raised in the
  thread that asked for the write;
- each write is durable before its caller hears of it: the caller waits for the
  group's commit (the same fsync, `synchronous=FULL` unchanged), and if that commit
  fails every write in the group fails with it, nothing half-written;
- the writes run in the order they queued, each on the chain's heads as the one before
  left them (the group's transaction sees its own statements), so the audit chain is
  what it would be had they committed one by one.

What it costs: a write waits for the group it joined, at most the writes queued ahead
of it in this process, which it waited for already when each committed on its own.
Only intake's write is grouped (review/intake/deferrals.py); every other write takes
the writer lock as before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection

T = TypeVar("T")


class GroupedWrite(Generic[T]):
    """One caller's write in a group: its work, and once the group is done, its result
    or its error and the notes it left for the after-commit hooks."""

    __slots__ = ("work", "notes", "result", "error", "done", "leads", "woken")

    def __init__(self, work: Callable[[Connection, Any], T], notes: Any):
        self.work = work
        self.notes = notes
        self.result: T | None = None
        self.error: BaseException | None = None
        self.done = False
        self.leads = False  # handed the lead: take the lock and commit what is queued
        self.woken = threading.Event()  # done, or handed the lead


class CommitGroups:
    """The writes of this process waiting for the writer lock, and the one that commits
    them.

    One write at a time leads: it alone queues on the writer lock, and once it has the
    lock it takes every write queued by then into its group. The others wait on an event
    of their own, set when their group has committed, all at once: had they queued on
    the lock too, each would have had to be woken in turn only to find its write done,
    and on a loaded machine each of those wake-ups held the lock for a scheduler's delay.
    A leader that is done hands the lead to the first write queued meanwhile.
    """

    def __init__(
        self,
        writer_lock: Callable[[], AbstractContextManager[None]],
        transaction: Callable[[], AbstractContextManager[Connection]],
        new_notes: Callable[[], Any],
    ):
        self._writer_lock = writer_lock  # the lock every writer queues on
        self._transaction = transaction  # a connection in an IMMEDIATE transaction
        self._new_notes = new_notes
        self._queue_lock = threading.Lock()
        self._queued: list[GroupedWrite[Any]] = []
        self._led = False  # a write leads (waits for the lock, or commits)
        self.groups = 0  # commits made, for tests and curiosity
        self.writes = 0  # writes committed in them

    def write(self, work: Callable[[Connection, Any], T]) -> tuple[GroupedWrite[T], int]:
        """Run `work(conn, notes)` in a savepoint of a group's transaction, committed
        before this returns. Returns the write (its result or error, its notes) and how
        many writes this call committed (0: another caller committed this one)."""
        mine = GroupedWrite(work, self._new_notes())
        with self._queue_lock:
            self._queued.append(mine)
            if not self._led:
                self._led = mine.leads = True
        if not mine.leads:
            mine.woken.wait()
            if mine.done:
                return mine, 0
        group: list[GroupedWrite[Any]] = []
        try:
            with self._writer_lock():
                with self._queue_lock:
                    group, self._queued = self._queued, []
                self._commit(group)
        finally:
            for write in group:
                write.done = True
                write.woken.set()
            with self._queue_lock:
                if not mine.done and mine in self._queued:  # failed before its group
                    self._queued.remove(mine)
                if self._queued:  # queued while this group committed: the first leads
                    self._queued[0].leads = True
                    self._queued[0].woken.set()
                else:
                    self._led = False
        return mine, len(group)

    def _commit(self, group: list[GroupedWrite[Any]]) -> None:
        try:
            with self._transaction() as conn:
                if len(group) == 1:  # alone, its transaction is its savepoint: its error
                    group[0].result = group[0].work(conn, group[0].notes)  # rolls it back
                else:
                    self._each_in_a_savepoint(conn, group)
        except BaseException as error:  # the transaction rolled back: every write failed
            for write in group:
                if write.error is None:
                    write.error = error
                    write.notes = self._new_notes()
            if not isinstance(error, Exception):
                raise
            return
        self.groups += 1
        self.writes += len(group)

    def _each_in_a_savepoint(self, conn: Connection, group: list[GroupedWrite[Any]]) -> None:
        raw = conn.connection.dbapi_connection
        for write in group:
            raw.execute("SAVEPOINT grouped_write")
            try:
                write.result = write.work(conn, write.notes)
            except Exception as error:  # this write only: the others go on
                raw.execute("ROLLBACK TO grouped_write")
                write.error = error
                write.notes = self._new_notes()  # what it noted never happened
            raw.execute("RELEASE grouped_write")
