"""Helpers for tests: an agent that signs its requests, sample bodies, people at the pages,
reads of the audit log, subprocesses of the app, and waiting on a condition."""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from review.signing import sign_headers

ROOT = Path(__file__).resolve().parent.parent  # the repository: where `flask --app app` runs


def serve_in_background(server: Any) -> threading.Thread:
    """Run a socketserver-style `server` (the tests' receivers, stand-ins and live
    servers) on a daemon thread, looking for a shutdown every 0.05 s: shutdown() waits
    for serve_forever's next look, 0.5 s apart by default, and many tests close one or
    more of them."""
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    return thread


REFUND: dict[str, Any] = {
    "action": {"tool": "billing.refund", "args": {"invoice": "INV-1", "amount": 740}},
    "summary": "Refund $740 to customer C-88319",
    "on_behalf_of": {"id": "alice@example.com", "display_name": "Alice"},
    "rationale": "duplicate charge",
    "before": {"invoice": "INV-1", "status": "paid"},
    "after": {"invoice": "INV-1", "status": "refunded"},
    "risk": {"score": 40, "reasons": ["small refund"]},
    "trace": {"id": "a1f8", "url": "https://traces.example.com/t/a1f8"},
    "labels": {"team": "billing"},
}


def refund(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(REFUND)
    body.update(changes)
    return body


class AgentClient:
    """A Flask test client that signs every request as one agent (Standard Webhooks)."""

    def __init__(self, client, slug: str, secret: str):
        self.client = client
        self.slug = slug
        self.secret = secret

    def headers(self, body: bytes, msg_id: str | None = None, at: float | None = None) -> dict:
        return sign_headers(
            self.secret,
            msg_id or f"msg_{uuid.uuid4().hex}",
            body,
            at=time.time() if at is None else at,
        )

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        msg_id: str | None = None,
        headers: dict | None = None,
        content_type: str = "application/json",
        at=None,
    ):
        signed = self.headers(body, msg_id, at)
        signed["Content-Type"] = content_type
        signed.update(headers or {})
        return self.client.open(path, method=method, data=body, headers=signed)

    def defer(self, body: dict | bytes | None = None, *, msg_id: str | None = None, **kwargs):
        raw = body if isinstance(body, bytes) else json.dumps(refund() if body is None else body)
        if isinstance(raw, str):
            raw = raw.encode()
        return self.request(
            "POST", f"/api/v1/agents/{self.slug}/deferrals", raw, msg_id=msg_id, **kwargs
        )

    def get(self, path: str, **kwargs):
        return self.request("GET", path, b"", **kwargs)

    def post_json(self, path: str, payload: Any, **kwargs):
        return self.request("POST", path, json.dumps(payload).encode(), **kwargs)

    def on(self, app) -> AgentClient:
        """The same agent (slug and secret), sending its requests to `app` instead."""
        return AgentClient(app.test_client(), self.slug, self.secret)


def csrf_token(html: str) -> str:
    """The CSRF token a page carries (hidden inputs and the htmx header both have it)."""
    import re

    match = (
        re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', html)
        or re.search(r'type="hidden" name="csrf_token" value="([^"]+)"', html)
        or re.search(r'"X-CSRFToken": "([^"]+)"', html)
    )
    assert match, "no CSRF token on the page"
    return match.group(1)


class Browser:
    """A logged-in person driving the pages with a Flask test client (forms, CSRF, htmx)."""

    def __init__(self, client, username: str, password: str = "correct horse battery"):
        self.client = client
        self.username = username
        page = client.get("/login").get_data(as_text=True)
        response = client.post(
            "/login",
            data={"username": username, "password": password, "csrf_token": csrf_token(page)},
        )
        assert response.status_code == 302, response.get_data(as_text=True)
        self.token = csrf_token(client.get("/queue").get_data(as_text=True))

    def get(self, path: str, **kwargs):
        return self.client.get(path, **kwargs)

    def post(self, path: str, data: dict | None = None, htmx: bool = False):
        headers = {"X-CSRFToken": self.token}
        if htmx:
            headers["HX-Request"] = "true"
        return self.client.post(
            path, data={**(data or {}), "csrf_token": self.token}, headers=headers
        )


def logged_in(app, name: str) -> Browser:
    """`name` (with the test password) logged in to `app` on a client of its own."""
    return Browser(app.test_client(), name)


def reviewer(svc, name: str = "rita", role: str = "reviewer"):
    """A user who can decide, as the domain sees them (a Holder)."""
    from review.reviewing.claims import Holder
    from review.users import create_user

    with svc.db.write() as session:
        user = create_user(session, name, role, "correct horse battery")
        session.flush()
        return Holder(user.id, name, frozenset({name}))


def approved(svc, agent: AgentClient, holder, body: dict | None = None) -> dict:
    """A deferral the agent made and `holder` approved: its resource, as the agent reads it."""
    from review.reviewing.claims import claim_batch
    from review.reviewing.decisions import decide

    d_id = agent.defer(body or refund()).get_json()["id"]
    claim_batch(svc, holder)
    outcome = decide(svc, holder, d_id, "approve")
    assert outcome.status == "approved", outcome.message
    return agent.get(f"/api/v1/deferrals/{d_id}").get_json()


def as_an_attacker(svc, *statements):
    """Run statements against the audit tables with their append-only triggers out of the
    way, as someone with full database access would (the triggers come back after)."""
    from sqlalchemy import text

    tables = ("audit_events", "audit_checkpoints")
    with svc.db.write() as session:
        if svc.db.is_sqlite:
            for table in tables:
                for action in ("update", "delete"):
                    session.execute(text(f"DROP TRIGGER {table}_no_{action}"))
        else:
            for table in tables:
                session.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        for statement in statements:
            session.execute(statement)
        if svc.db.is_sqlite:
            for table in tables:
                for action in ("UPDATE", "DELETE"):
                    session.execute(
                        text(
                            f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON "
                            f"{table} BEGIN SELECT RAISE(ABORT, '{action} on {table} refused: "
                            "the audit log is append-only'); END"
                        )
                    )
        else:
            for table in tables:
                session.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))


@dataclass(frozen=True)
class CallbackWorld:
    """An app whose agent sends its callbacks to a local receiver (the callback_world fixture)."""

    app: Any
    svc: Any  # the app's Services
    agent: AgentClient
    receiver: Any  # tests.receivers.Receiver

    def work_until(self, until: Callable[[], bool], timeout: float = 15.0) -> None:
        """Run this app's burst workers until `until()` holds (see work_until)."""
        work_until(self.app, self.svc, until, timeout)


def work_until(app, svc, until: Callable[[], bool], timeout: float = 15.0) -> None:
    """Run burst workers (with rq's scheduler) until `until()` holds."""
    from approval_queue.worker import run_worker

    def worked_and_done() -> bool:
        with app.app_context():
            run_worker(svc, burst=True)
        return until()

    wait_for(worked_and_done, timeout=timeout, interval=0.3, message="the worker did not get there")


# --- reading what happened ------------------------------------------------------------


def audit_events(svc, event_type: str | None = None, **where: Any) -> list:
    """Audit events in chain order, of one type if given, with columns equal to `where`."""
    from sqlalchemy import select

    from review.models import AuditEvent

    query = select(AuditEvent).order_by(AuditEvent.seq)
    if event_type is not None:
        query = query.where(AuditEvent.event_type == event_type)
    for column, value in where.items():
        query = query.where(getattr(AuditEvent, column) == value)
    with svc.db.read() as session:
        return session.scalars(query).all()


def count_rows(svc, model) -> int:
    """How many rows `model`'s table holds."""
    from sqlalchemy import func, select

    with svc.db.read() as session:
        return session.scalar(select(func.count()).select_from(model))


def append_events(svc, n: int, kind: str = "test.event", **payload: Any) -> None:
    """Append `n` system events of `kind` to the chain, one transaction each."""
    from review.audit.chain import record_event

    for i in range(n):
        with svc.db.write() as session:
            record_event(
                session,
                actor_kind="system",
                actor_id="test",
                event_type=kind,
                payload={"i": i, **payload},
            )


# --- the app in processes of its own ---------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (as of now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_environment(settings_overrides: dict, **variables: str) -> dict[str, str]:
    """The environment for the app in a subprocess, on the test's database and Redis;
    `variables` add to it or replace its values (REDIS_URL=..., COUNTERSIGN_...=...)."""
    return {
        **os.environ,
        "DATABASE_URL": settings_overrides["database_url"],
        "REDIS_URL": settings_overrides["redis_url"],
        "COUNTERSIGN_INSTANCE_DIR": settings_overrides["instance_dir"],
        "SECRET_KEY": settings_overrides["secret_key"],
        **variables,
    }


def run_flask(*args: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """`flask --app app ARGS...` as an operator runs it, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# --- waiting ----------------------------------------------------------------------------


def wait_for(
    condition: Callable[[], Any],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str | Callable[[], str] = "the condition did not hold",
) -> Any:
    """Wait until `condition()` is true and return its value; AssertionError after `timeout`
    seconds, saying `message` (or what `message()` says then, for logs read at the end)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            said = message() if callable(message) else message
            raise AssertionError(f"timed out after {timeout} s: {said}")
        time.sleep(interval)


def filled_row(table, **given: Any) -> dict[str, Any]:
    """A row of `table` (as reflected at an old revision) with every required column set."""
    from datetime import UTC, datetime

    from sqlalchemy import JSON, Boolean, DateTime, Integer, String, Text

    row = dict(given)
    for c in table.columns:
        if c.name in row or c.nullable or c.server_default is not None or c.autoincrement is True:
            continue
        t = c.type
        if isinstance(t, Boolean):
            row[c.name] = False
        elif isinstance(t, Integer):
            row[c.name] = 1
        elif isinstance(t, DateTime) or "DateTime" in type(t).__name__:
            row[c.name] = datetime(2026, 11, 1, tzinfo=UTC)
        elif isinstance(t, String | Text):
            row[c.name] = "x"
        elif isinstance(t, JSON) or "JSON" in type(t).__name__:
            row[c.name] = {}
        else:
            row[c.name] = "x"
    return row
