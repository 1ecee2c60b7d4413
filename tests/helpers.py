"""Helpers for tests: an agent that signs its requests, and sample bodies."""

from __future__ import annotations

import copy
import json
import time
import uuid
from typing import Any

from review.signing import sign_headers

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
