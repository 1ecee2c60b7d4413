"""Every metric the service's processes observe: names, types, labels (docs/METRICS.md).

prometheus-client keeps the values. With PROMETHEUS_MULTIPROC_DIR set (`serve` sets it;
a systemd install sets it for the web and the worker units alike) each process, every
gunicorn worker and the rq worker on the host, writes its values into files in that
folder and /metrics adds them up; without it they are this process's own, in
`REGISTRY`. What describes the database and Redis (pending deferrals, the outbox, queue
depths, the worker's heartbeat) is not kept here: review/observability/state.py reads it
when /metrics is scraped.

Observing is a lock and an addition (in multiprocess mode, into a memory-mapped file):
no query, no Redis round trip. Label values come from fixed sets (outcomes, codes,
doors), never from what an agent sends, so the number of series stays small. A failure
to observe is logged and swallowed: a metric must never turn a committed change into
an error.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from sqlalchemy.orm import Session

from review.db import Notes

log = logging.getLogger(__name__)
# `*_created` series (a timestamp per series) are not written in multiprocess mode; leave
# them out in one process too, so that both answer the same names.
disable_created_metrics()
# The package's __init__ has made the multiprocess folder, if any, before the metrics below.
REGISTRY = CollectorRegistry(auto_describe=True)

# Who decided: a reviewer, the policy at intake, the agent (cancel), or the service
# itself (expiry, the kill switch, which ends deferrals whoever flipped it).
PERSON, POLICY, AGENT, SYSTEM = "person", "policy", "agent", "system"
DECIDERS = {
    PERSON: ("approved", "rejected"),
    POLICY: ("approved", "rejected"),
    AGENT: ("cancelled",),
    SYSTEM: ("expired", "killed"),
}
ACTOR_KINDS = {"user": PERSON, "agent": AGENT, "system": SYSTEM}

DECISIONS = Counter(
    "countersign_decisions",
    "Deferrals that ended, by outcome and by who ended them.",
    ["outcome", "by"],
    registry=REGISTRY,
)
DECISION_SECONDS = Histogram(
    "countersign_decision_seconds",
    "Time from a deferral's intake to its decision.",
    ["outcome", "by"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800, 86400, 259200),
    registry=REGISTRY,
)
INTAKE_SECONDS = Histogram(
    "countersign_intake_seconds",
    "Time to answer a deferral request, from the view's start (authentication included).",
    ["door", "result"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
REFUSALS = Counter(
    "countersign_refusals",
    "Requests answered with an error, by door and error code.",
    ["door", "code"],
    registry=REGISTRY,
)
LONG_POLLS = Gauge(
    "countersign_long_polls_in_flight",
    "Requests waiting for a deferral to end (long-polls), in every live process.",
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
BREAKER_TRIPS = Counter(
    "countersign_breaker_trips",
    "Kill switches flipped by a breaker, by rule (flood, rejections).",
    ["rule"],
    registry=REGISTRY,
)
CALLBACK_ATTEMPTS = Counter(
    "countersign_callback_attempts",
    "Callback delivery attempts, by what came of them (delivered, retry, dead).",
    ["result"],
    registry=REGISTRY,
)
CALLBACK_ATTEMPT_SECONDS = Histogram(
    "countersign_callback_attempt_seconds",
    "Duration of one callback attempt (connect, request, the answer).",
    ["result"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60),
    registry=REGISTRY,
)
CALLBACK_DELIVERY_SECONDS = Histogram(
    "countersign_callback_delivery_seconds",
    "Time from a callback's outbox row (the change it reports) to its delivery.",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200, 21600, 86400, 259200),
    registry=REGISTRY,
)
ATTEMPT_RESULTS = {"delivered": "delivered", "pending": "retry", "dead": "dead"}
BREAKER_RULES = ("flood", "rejections")

F = TypeVar("F", bound=Callable[..., Any])


def _never_raises(func: F) -> F:
    @functools.wraps(func)
    def safe(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception:
            log.exception("metric not observed (%s)", func.__name__)
            return None

    return safe  # type: ignore[return-value]


def _start_at_zero() -> None:
    """Every series of a fixed label set exists from the start (at 0), so that rate()
    and increase() see the first event, and dashboards show 0 rather than nothing."""
    for by, outcomes in DECIDERS.items():
        for outcome in outcomes:
            DECISIONS.labels(outcome, by)
    for rule in BREAKER_RULES:
        BREAKER_TRIPS.labels(rule)
    for result in ATTEMPT_RESULTS.values():
        CALLBACK_ATTEMPTS.labels(result)


_start_at_zero()


# --- decisions: noted in the transaction, counted after its commit -----------------------


def note_decided(
    session: Session | Notes, outcome: str, by: str, created_at: datetime, decided_at: datetime
) -> None:
    """Count this ending once its transaction commits (a rolled-back one counts nothing)."""
    seconds = (decided_at - created_at).total_seconds()
    session.info.setdefault("decided", []).append((outcome, by, seconds))


def decider(actor_kind: str) -> str:
    """`by` for an audit actor's kind (user, agent, system)."""
    return ACTOR_KINDS.get(actor_kind, SYSTEM)


@_never_raises
def after_commit(info: dict[str, Any]) -> None:
    """The Database's after-commit hook: the decisions the transaction noted."""
    for outcome, by, seconds in info.pop("decided", ()):
        observe_decision(outcome, by, seconds)


@_never_raises
def observe_decision(outcome: str, by: str, seconds: float) -> None:
    DECISIONS.labels(outcome, by).inc()
    DECISION_SECONDS.labels(outcome, by).observe(max(seconds, 0.0))


# --- requests ----------------------------------------------------------------------------


class IntakeTimer:
    """What a deferral request came to: `created` or `replayed`; `refused` if it raised."""

    def __init__(self) -> None:
        self.result = "refused"

    def answered(self, created: bool) -> None:
        self.result = "created" if created else "replayed"


@contextmanager
def timed_intake(door: str) -> Iterator[IntakeTimer]:
    """Time a deferral request's view; the caller says how it ended with `answered`."""
    started = time.perf_counter()
    timer = IntakeTimer()
    try:
        yield timer
    finally:
        _observe_intake(door, timer.result, time.perf_counter() - started)


@_never_raises
def _observe_intake(door: str, result: str, seconds: float) -> None:
    INTAKE_SECONDS.labels(door, result).observe(seconds)


@_never_raises
def count_refusal(door: str, code: str) -> None:
    REFUSALS.labels(door, code).inc()


@contextmanager
def long_poll_in_flight() -> Iterator[None]:
    _long_polls(1)
    try:
        yield
    finally:
        _long_polls(-1)


@_never_raises
def _long_polls(change: int) -> None:
    LONG_POLLS.inc(change)


@_never_raises
def count_breaker_trip(rule: str) -> None:
    BREAKER_TRIPS.labels(rule).inc()


# --- the worker's callbacks --------------------------------------------------------------


@_never_raises
def observe_attempt(outcome: str, seconds: float, waited: float | None) -> None:
    """One recorded attempt: its outcome (delivered, pending, dead), how long it took,
    and, once delivered, how long the callback `waited` since its outbox row was written."""
    result = ATTEMPT_RESULTS[outcome]
    CALLBACK_ATTEMPTS.labels(result).inc()
    CALLBACK_ATTEMPT_SECONDS.labels(result).observe(seconds)
    if outcome == "delivered" and waited is not None:
        CALLBACK_DELIVERY_SECONDS.observe(max(waited, 0.0))


# --- notifications (review/notifications/) -----------------------------------------------

NOTIFICATIONS = Counter(
    "countersign_notifications",
    "Notification attempts by channel and what came of them (delivered, retry, dead, skipped).",
    ["channel", "result"],
    registry=REGISTRY,
)
NOTIFIED_DECISION_SECONDS = Histogram(
    "countersign_notified_decision_seconds",
    "Time from a channel's first message about a deferral to its decision, by channel.",
    ["channel"],
    buckets=(10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400),
    registry=REGISTRY,
)
NOTIFY_CHANNELS = ("email", "slack", "webhook")
NOTIFY_RESULTS = ("delivered", "retry", "dead", "skipped")


@_never_raises
def count_notification(channel: str, result: str) -> None:
    NOTIFICATIONS.labels(channel, result).inc()


@_never_raises
def observe_notified_decision(channel: str, seconds: float) -> None:
    NOTIFIED_DECISION_SECONDS.labels(channel).observe(max(seconds, 0.0))


def _notifications_at_zero() -> None:
    for channel in NOTIFY_CHANNELS:
        for result in NOTIFY_RESULTS:
            NOTIFICATIONS.labels(channel, result)


_notifications_at_zero()
