"""PostgreSQL backends' CPU for one database, watched from a bench (shared by
reviewer_flow, intake, decision_cost and flow_phases)."""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from bench.common import PG_ADMIN


class DatabaseCpu:
    """PostgreSQL: the CPU time of the backends serving one database, which the server's
    CPU (gunicorn's processes) does not include: they run on the same cores. `look()`
    lists the database's backends (pg_stat_activity, from a connection to the admin
    database, whose own backend is not among them) and reads each one's time on a CPU
    (/proc/<pid>/schedstat, in nanoseconds: utime + stime's 10 ms ticks are too coarse
    for one request), keeping the last figure seen. `used()` is the CPU they have spent
    since this object was made: a backend born since counts whole (its connection's
    start-up included); one that has exited counts as last seen. `watch()` looks every
    `every` seconds in a thread until `used()`, so that a backend exiting in a long run
    loses at most that interval's CPU (the app's pool keeps its connections, so few do).
    """

    def __init__(self, url: str, every: float = 0.2):
        self.name = make_url(url).database
        self.every = every
        self.last: dict[int, int] = {}  # pid -> nanoseconds on a CPU when last seen
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._admin = psycopg.connect(
            make_url(PG_ADMIN).set(drivername="postgresql").render_as_string(False),
            autocommit=True,
        )
        self._lock = threading.Lock()
        self.look()
        self.first = dict(self.last)

    def look(self) -> None:
        with self._lock:
            pids = self._admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", (self.name,)
            ).fetchall()
            for (pid,) in pids:
                ran = _time_on_cpu(pid)
                if ran is not None:
                    self.last[pid] = ran

    def used(self) -> float:
        """The backends' CPU seconds since this object was made (a look taken now)."""
        self.look()
        return sum(t - self.first.get(pid, 0) for pid, t in self.last.items()) / 1e9

    def watch(self) -> None:
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(self.every):
            self.look()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._admin.close()


def _time_on_cpu(pid: int) -> int | None:
    """A process's time on a CPU so far, in nanoseconds (the first figure of
    /proc/<pid>/schedstat: user and system time), or None when it has exited."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
    except (FileNotFoundError, ProcessLookupError):
        return None
