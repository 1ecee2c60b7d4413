"""Multiprocess mode's shared folder: made fresh when the service starts, kept tidy after.

Each process writes its values to files named after its pid (`counter_1234.db`). A
file of a process that is gone keeps counting in the sums: right for counters and
histograms (what it counted happened), wrong for the long-polls-in-flight gauge, whose
files are removed when gunicorn reports the worker gone (`child_exit`). Files of an
earlier run are removed before the service starts, so that a new process that gets an
old pid does not carry on from a dead one's numbers: `serve` empties the folder
(`fresh_folder`, nothing of the service runs yet); under systemd, where the web and the
worker start on their own, gunicorn's `on_starting` and the worker remove the files of
processes that no longer exist (`remove_dead_files`), leaving the other's.

review/gunicorn_conf.py takes both hooks from here.
"""

from __future__ import annotations

import glob
import logging
import os

from prometheus_client import multiprocess

from review.observability import MULTIPROC_ENV

log = logging.getLogger(__name__)


def fresh_folder(path: str) -> str:
    """Create `path`, and remove the metric files (`*.db`) an earlier run left there.

    Only those files: the folder may be one the operator chose, holding other things.
    """
    os.makedirs(path, exist_ok=True)
    for name in glob.glob(os.path.join(path, "*.db")):
        _remove(name)
    return path


def remove_dead_files(path: str) -> int:
    """Remove the metric files of processes that no longer exist; how many."""
    removed = 0
    for name in glob.glob(os.path.join(path, "*.db")):
        pid = os.path.basename(name).removesuffix(".db").rpartition("_")[2]
        if pid.isdigit() and not _alive(int(pid)):
            removed += _remove(name)
    return removed


def on_starting(server) -> None:  # noqa: ARG001  (gunicorn's hook signature)
    """gunicorn's `on_starting` hook: before the workers, drop the files of dead processes."""
    path = os.environ.get(MULTIPROC_ENV)
    if path and os.path.isdir(path):
        remove_dead_files(path)


def child_exit(server, worker) -> None:  # noqa: ARG001  (gunicorn's hook signature)
    """gunicorn's `child_exit` hook: a worker that ended no longer counts in live gauges."""
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        multiprocess.mark_process_dead(worker.pid, path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def _remove(name: str) -> int:
    try:
        os.remove(name)
    except FileNotFoundError:
        return 0
    return 1
