"""Countersign's app with each request's time split by step: bench/intake_split.py serves it.

Instrumentation for a bench, never for the service: the steps of intake are wrapped
(module attributes replaced before the app is built, so the app calls the wrappers), and
each request's wall time per step, its thread's CPU and the garbage collector's passes
are kept per request and appended as JSON lines to `$SPLIT_OUT.<pid>.jsonl` (GET
/_split_flush writes what is held). A step that runs in another request's thread (a
write in a group commit, review/commit_groups.py) is counted in that request's; a
write waiting for its group shows only in `create_deferral`.
"""

from __future__ import annotations

import fcntl
import gc
import json
import os
import sqlite3
import threading
import time
from contextlib import contextmanager

import review.db as rdb

_local = threading.local()
_held: list[dict] = []
_held_lock = threading.Lock()
OUT = os.environ["SPLIT_OUT"]  # bench/intake_split.py names it


def _add(label: str, seconds: float, value: float | None = None) -> None:
    record = getattr(_local, "record", None)
    if record is not None:
        record[label] = record.get(label, 0.0) + (value if value is not None else seconds * 1000)


def _timed(label, fn):
    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _add(label, time.perf_counter() - start)

    return timed


def _patch(owner, name: str, label: str) -> None:
    setattr(owner, name, _timed(label, getattr(owner, name)))


@contextmanager
def _held_writer_lock(self):
    """review/db.py WriterLock.held, timing the thread lock's wait, the flock's, the hold."""
    start = time.perf_counter()
    with self._thread_lock:
        threads_done = time.perf_counter()
        _add("lock: wait for this worker's threads", threads_done - start)
        if self._fd is None or self._pid != os.getpid():
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            self._pid = os.getpid()
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        taken = time.perf_counter()
        _add("lock: wait for the other workers", taken - threads_done)
        try:
            yield
        finally:
            _add("lock: held", time.perf_counter() - taken)
            fcntl.flock(self._fd, fcntl.LOCK_UN)


rdb.WriterLock.held = _held_writer_lock  # before the app is built: its Database binds it

from sqlalchemy.engine import default as sa_default  # noqa: E402

import review.agents.breakers as breakers  # noqa: E402
import review.api.views as views  # noqa: E402
import review.commit_groups as commit_groups  # noqa: E402
import review.intake.admission as admission  # noqa: E402
import review.intake.deferrals as deferrals  # noqa: E402
import review.intake.policy as policy  # noqa: E402
import review.intake.preparation as preparation  # noqa: E402
import review.intake.receive as receive  # noqa: E402
import review.reviewing.live as live  # noqa: E402
import review.wal_checkpoints as wal_checkpoints  # noqa: E402
from review.driver_statements import DriverStatements  # noqa: E402
from review.wsgi import app  # noqa: E402

_patch(views, "authenticate_agent", "signature (agent lookup, HMAC)")
_patch(views, "checked_json", "body: JSON and schema")
_patch(views, "deferral_resource", "answer's resource")
_patch(admission, "admit", "Redis: admission script")
_patch(receive, "prepare", "prepare")
_patch(preparation, "request_hash", "prepare: request hash (sorted JSON)")
_patch(preparation, "action_digest", "prepare: canonical JSON digest")
_patch(preparation, "compute_diff", "prepare: diff")
policy.Policy.evaluate = _timed("prepare: policy", policy.Policy.evaluate)
_patch(receive, "create_deferral", "create_deferral")
_patch(deferrals, "deferral_values", "row values")
_patch(deferrals, "intake_events", "events")
_patch(deferrals, "placed_events", "events placed and hashed")
DriverStatements.bind = _timed("row bound", DriverStatements.bind)
_patch(deferrals, "_create", "SQLite: statements under the lock")
_patch(deferrals, "call_intake", "PostgreSQL: countersign_intake call")
sa_default.DefaultDialect.do_commit = _timed("SQLite: COMMIT", sa_default.DefaultDialect.do_commit)
_patch(live.Arrivals, "note", "live counter: arrival noted (INCR by its thread)")
_patch(breakers, "after_intake", "flood breaker")

_commit_group = commit_groups.CommitGroups._commit


def _commit_counted(self, group):
    _add("group commits led", 0, 1)
    _add("writes in the groups led", 0, len(group))
    return _commit_group(self, group)


commit_groups.CommitGroups._commit = _commit_counted

_checkpoints: list[list] = []
_connect = sqlite3.connect


class _TimedCheckpoints:
    """The checkpointer's connection (review/wal_checkpoints.py), each PRAGMA timed."""

    def __init__(self, connection):
        self._connection = connection

    def execute(self, sql, *args):
        start = time.perf_counter()
        row = self._connection.execute(sql, *args).fetchone()
        _checkpoints.append([time.time(), (time.perf_counter() - start) * 1000])
        return _Row(row)

    def close(self):
        self._connection.close()


class _Row:
    def __init__(self, row):
        self._row = row

    def fetchone(self):
        return self._row


class _Sqlite3:
    Error = sqlite3.Error

    @staticmethod
    def connect(*args, **kwargs):
        return _TimedCheckpoints(_connect(*args, **kwargs))


wal_checkpoints.sqlite3 = _Sqlite3

_gc_started: dict[int, float] = {}
_gc_passes: list[list] = []


def _gc_timed(phase, info):
    if phase == "start":
        _gc_started[threading.get_ident()] = time.perf_counter()
        return
    start = _gc_started.pop(threading.get_ident(), None)
    if start is not None:
        took = time.perf_counter() - start
        _add("garbage collection", took)
        _gc_passes.append([info.get("generation"), took * 1000])


gc.callbacks.append(_gc_timed)


def _flush() -> None:
    with _held_lock:
        records, checkpoints, passes = list(_held), list(_checkpoints), list(_gc_passes)
        _held.clear(), _checkpoints.clear(), _gc_passes.clear()
    with open(f"{OUT}.{os.getpid()}.jsonl", "a") as out:
        for record in records:
            out.write(json.dumps(record) + "\n")
        for checkpoint in checkpoints:
            out.write(json.dumps({"checkpoint": checkpoint}) + "\n")
        for gc_pass in passes:
            out.write(json.dumps({"gc": gc_pass}) + "\n")


_inner = app.wsgi_app


def _split(environ, start_response):
    if environ.get("PATH_INFO") == "/_split_flush":
        _flush()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"flushed"]
    record = _local.record = {"path": environ.get("PATH_INFO")}
    cpu, wall = time.thread_time(), time.perf_counter()
    try:
        return _inner(environ, start_response)
    finally:
        record["in the app"] = (time.perf_counter() - wall) * 1000
        record["thread CPU"] = (time.thread_time() - cpu) * 1000
        _local.record = None
        with _held_lock:
            _held.append(record)
        if len(_held) > 400:
            _flush()


app.wsgi_app = _split
