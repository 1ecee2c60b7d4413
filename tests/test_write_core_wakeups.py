"""A write through `Database.write_core` (review/db.py) notes what to wake, as `write()`'s
session does: the `after_commit` hooks run on its notes once it commits, and nothing is
woken when it rolls back."""

from __future__ import annotations

import pytest

from review import redis_keys
from review.callbacks.wakeups import note_deliver


def test_a_core_write_that_commits_wakes_what_it_noted(svc, redis_client):
    with svc.db.write_core() as (conn, notes):
        conn.exec_driver_sql("SELECT 1")
        note_deliver(notes, "evt_noted")
    assert redis_client.get(redis_keys.DELIVERY_FLUSH_QUEUED) == b"1"  # the flush is queued
    assert notes.info == {}  # the hooks took their notes


def test_a_core_write_that_rolls_back_wakes_nothing(svc, redis_client):
    with pytest.raises(RuntimeError), svc.db.write_core() as (conn, notes):
        conn.exec_driver_sql("SELECT 1")
        note_deliver(notes, "evt_noted")
        raise RuntimeError("the write fails after noting")
    assert redis_client.get(redis_keys.DELIVERY_FLUSH_QUEUED) is None
    assert notes.info == {"deliver": ["evt_noted"]}  # no hook ran on them
