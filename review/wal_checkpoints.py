"""SQLite: the WAL is checkpointed by a thread of its own, outside the writer lock.

SQLite's automatic checkpoint runs inside the commit that takes the WAL past
`wal_autocheckpoint` pages (1,000), while that writer still holds the lock every other
writer queues on (review/db.py WriterLock). An intake writes about 35 pages (the
deferral, its events, their indexes, the chain's heads), so every 30th intake or so held
every other writer while it copied 4 MB into the database file and fsynced it, in the
tail of every request queued behind it.

So every `EVERY_COMMITS` writes this process wakes its checkpointer, which runs a
PASSIVE checkpoint on a connection of its own: it copies the frames no reader still
needs and waits for nobody, and writers go on appending to the WAL meanwhile. SQLite's
own checkpoint stays at 1,000 pages (`INLINE_PAGES`): it is what resets the WAL to its
start (a reset needs a moment when every frame is copied and no writer is midway,
which a busy stream of writers seldom leaves a background thread), but it now finds
most frames copied already and has only the last few commits' to copy. (With the inline
checkpoint pushed to 10,000 pages the WAL grew to 41 MB under 8 concurrent writers.)
Durability is unchanged: a commit is durable in the WAL (synchronous=FULL) before any
checkpoint copies it.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading

log = logging.getLogger(__name__)

EVERY_COMMITS = 8  # writes of this process between two background checkpoints
INLINE_PAGES = 1_000  # SQLite's own, inside a commit: resets the WAL, copies what is left


class WalCheckpointer:
    """One per Database on a SQLite file; its thread starts at the first checkpoint due
    (again in a forked child, which has no thread of its parent's)."""

    def __init__(self, path: str):
        self.path = path
        self.checkpoints = 0  # completed, for tests and curiosity
        self.last: tuple[int, int, int] | None = None  # (busy, WAL frames, copied frames)
        self._commits = 0
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._start_lock = threading.Lock()

    def committed(self, writes: int = 1) -> None:
        """`writes` writes of this process committed (called after its locks are
        released; several when they shared a commit, review/commit_groups.py)."""
        before = self._commits
        self._commits += writes  # unlocked: a lost increment only delays a checkpoint
        if self._commits // EVERY_COMMITS != before // EVERY_COMMITS:
            self.request()

    def request(self) -> None:
        """Checkpoint soon, in the background."""
        if self._closed:
            return
        if self._thread is None or self._pid != os.getpid():
            with self._start_lock:
                if self._thread is None or self._pid != os.getpid():
                    self._pid = os.getpid()
                    self._wake = threading.Event()
                    self._thread = threading.Thread(
                        target=self._run, name="sqlite-wal-checkpoint", daemon=True
                    )
                    self._thread.start()
        self._wake.set()

    def close(self) -> None:
        self._closed = True
        self._wake.set()

    def _run(self) -> None:
        wake = self._wake
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        try:
            while True:
                wake.wait()
                wake.clear()
                if self._closed:
                    return
                try:
                    row = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:  # the inline backstop still bounds the WAL
                    log.warning("WAL checkpoint of %s failed: %s", self.path, exc)
                    continue
                self.last = tuple(row)
                self.checkpoints += 1
        finally:
            connection.close()
