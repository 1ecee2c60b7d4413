"""A local stand-in for Slack that speaks its wire format, and a sender of interaction
requests signed exactly as Slack signs them.

`SlackStandIn` is a real HTTP server (a thread) answering the Web API methods Countersign
calls at `/api/<method>`, as slack_sdk sends them (JSON bodies for chat.postMessage,
chat.update and views.open; a GET with query parameters for users.info; form bodies
accepted too; the bot token as `Authorization: Bearer`), with the answers Slack
documents (`{"ok": true, "channel": ..., "ts": ...}`, `{"ok": false, "error":
"invalid_auth"}`, 429 with Retry-After and `"error": "ratelimited"`). It keeps every
call, the messages as they stand after updates, and accepts response_url posts at
`/actions/...`. `fail(method, ...)` makes the next calls of a method fail.

`SlackSender` posts `payload=<JSON>` (form-encoded) with `X-Slack-Request-Timestamp` and
`X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:{ts}:{body}">`, built from the message the
stand-in holds (the buttons' real action_id and value) and the modal it was asked to open.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.helpers import serve_in_background

TOKEN = "xoxb-1234-5678-standin"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TEAM = {"id": "T0STANDIN", "domain": "countersign-tests"}
CHANNEL = "C0STANDIN1"
TRIGGER_SECONDS = 3  # Slack's trigger_ids are good for 3 seconds


@dataclass
class SlackAccount:
    id: str
    name: str
    email: str | None
    deleted: bool = False
    is_bot: bool = False


@dataclass
class Call:
    method: str
    args: dict[str, Any]  # the JSON body, or the form / query parameters (one value each)
    headers: dict[str, str]
    http_method: str = "POST"


@dataclass
class Fault:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class SlackStandIn:
    def __init__(self, accounts: list[SlackAccount] = ()):
        self.accounts = {a.id: a for a in accounts}
        self.calls: list[Call] = []
        self.replies: list[dict[str, Any]] = []  # what came to response_urls
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}  # (channel, ts) -> message
        self.faults: dict[str, list[Fault]] = {}
        self.triggers: dict[str, float] = {}
        self._ts = itertools.count(1)
        self._lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                standin._serve(self, "GET")

            def do_POST(self):
                standin._serve(self, "POST")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.api_url = f"{self.url}/api/"
        self.thread = serve_in_background(self.server)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- what tests use --------------------------------------------------------------

    def calls_of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def fail(self, method: str, times: int, status: int, body: dict, **headers: str) -> None:
        self.faults.setdefault(method, []).extend([Fault(status, body, headers)] * times)

    def new_trigger(self) -> str:
        trigger = f"{int(time.time())}.{next(self._ts)}.standin"
        self.triggers[trigger] = time.time()
        return trigger

    def response_url(self) -> str:
        return f"{self.url}/actions/{TEAM['id']}/{next(self._ts)}/standin"

    # --- serving ---------------------------------------------------------------------

    def _serve(self, handler: BaseHTTPRequestHandler, http_method: str) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        headers = dict(handler.headers)
        if parts.path.startswith("/actions/"):
            self.replies.append(json.loads(raw))
            return self._send(handler, 200, b"ok", "text/html")
        if not parts.path.startswith("/api/"):
            return self._send(handler, 404, b"not found", "text/plain")
        method = parts.path.removeprefix("/api/")
        args = {k: v[0] for k, v in parse_qs(parts.query).items()}
        content_type = headers.get("Content-Type", "")
        if raw and content_type.startswith("application/json"):
            args.update(json.loads(raw))
        elif raw:
            args.update({k: v[0] for k, v in parse_qs(raw.decode()).items()})
        with self._lock:
            self.calls.append(Call(method, args, headers, http_method))
            faults = self.faults.get(method)
            fault = faults.pop(0) if faults else None
        if fault is not None:
            return self._json(handler, fault.status, fault.body, fault.headers)
        token = args.get("token") or headers.get("Authorization", "").removeprefix("Bearer ")
        if not token:
            return self._json(handler, 200, {"ok": False, "error": "not_authed"})
        if token != TOKEN:
            return self._json(handler, 200, {"ok": False, "error": "invalid_auth"})
        answer = getattr(self, "_" + method.replace(".", "_"), None)
        if answer is None:
            return self._json(handler, 200, {"ok": False, "error": "unknown_method"})
        with self._lock:
            return self._json(handler, 200, answer(args))

    def _send(self, handler, status: int, body: bytes, content_type: str, headers=None) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)

    def _json(self, handler, status: int, body: dict, headers=None) -> None:
        raw = json.dumps(body).encode()
        self._send(handler, status, raw, "application/json; charset=utf-8", headers)

    # --- the methods, answering as Slack documents -----------------------------------

    def _chat_postMessage(self, args: dict) -> dict:
        channel = args.get("channel", "")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        channel_id = channel if channel.startswith("C") else CHANNEL
        ts = f"{int(time.time())}.{next(self._ts):06d}"
        message = {
            "type": "message",
            "subtype": "bot_message",
            "text": args.get("text", ""),
            "blocks": args.get("blocks", []),
            "bot_id": "B0STANDIN",
            "ts": ts,
        }
        self.messages[(channel_id, ts)] = message
        return {"ok": True, "channel": channel_id, "ts": ts, "message": message}

    def _chat_update(self, args: dict) -> dict:
        key = (args.get("channel", ""), args.get("ts", ""))
        if key not in self.messages:
            return {"ok": False, "error": "message_not_found"}
        message = self.messages[key]
        message.update(text=args.get("text", ""), blocks=args.get("blocks", []))
        return {
            "ok": True,
            "channel": key[0],
            "ts": key[1],
            "text": message["text"],
            "message": message,
        }

    def _users_info(self, args: dict) -> dict:
        account = self.accounts.get(args.get("user", ""))
        if account is None:
            return {"ok": False, "error": "user_not_found"}
        profile: dict[str, Any] = {"real_name": account.name, "display_name": account.name}
        if account.email is not None:
            profile["email"] = account.email
        return {
            "ok": True,
            "user": {
                "id": account.id,
                "team_id": TEAM["id"],
                "name": account.name,
                "deleted": account.deleted,
                "is_bot": account.is_bot,
                "profile": profile,
            },
        }

    def _views_open(self, args: dict) -> dict:
        issued = self.triggers.pop(args.get("trigger_id", ""), None)
        if issued is None:
            return {"ok": False, "error": "invalid_trigger_id"}
        if time.time() - issued > TRIGGER_SECONDS:
            return {"ok": False, "error": "expired_trigger_id"}
        view = dict(args.get("view") or {})
        view.update(id=f"V0STANDIN{next(self._ts)}", team_id=TEAM["id"], state={"values": {}})
        view.setdefault("private_metadata", "")
        return {"ok": True, "view": view}


# --- interaction requests, signed as Slack signs them -----------------------------------


def slack_signature(secret: str, timestamp: str, body: bytes) -> str:
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


class SlackSender:
    """Sends interaction requests to the app (a Flask test client) as Slack would."""

    def __init__(self, client, standin: SlackStandIn, secret: str = SIGNING_SECRET):
        self.client = client
        self.standin = standin
        self.secret = secret
        self.path = "/integrations/slack/interactions"

    def signed(self, body: bytes, at: float | None = None) -> dict[str, str]:
        timestamp = str(int(time.time() if at is None else at))
        return {
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": slack_signature(self.secret, timestamp, body),
        }

    def post(self, payload: dict, headers: dict | None = None, at: float | None = None):
        body = urlencode({"payload": json.dumps(payload)}).encode()
        return self.client.post(self.path, data=body, headers=headers or self.signed(body, at))

    def click(self, account: SlackAccount, action_id: str, message_key=None, **changes):
        """A person clicks a button of the message (the newest one by default)."""
        channel, ts = message_key or list(self.standin.messages)[-1]
        message = self.standin.messages[(channel, ts)]
        button = next(
            e
            for block in message["blocks"]
            if block["type"] == "actions"
            for e in block["elements"]
            if e.get("action_id") == action_id
        )
        payload = block_actions(self.standin, account, channel, ts, message, button)
        payload.update(changes)
        return self.post(payload)

    def submit_reason(self, account: SlackAccount, reason: str, view: dict | None = None):
        """A person types a reason into the modal the app opened, and submits it."""
        view = view or self.standin.calls_of("views.open")[-1].args["view"]
        block = next(b for b in view["blocks"] if b["type"] == "input")
        action_id = block["element"]["action_id"]
        state = {block["block_id"]: {action_id: {"type": "plain_text_input", "value": reason}}}
        payload = {
            "type": "view_submission",
            "team": TEAM,
            "user": _user(account),
            "api_app_id": "A0STANDIN",
            "token": "legacy-verification-token",
            "trigger_id": self.standin.new_trigger(),
            "view": {**view, "id": "V0STANDIN", "state": {"values": state}, "hash": "1.abc"},
            "response_urls": [],
            "is_enterprise_install": False,
            "enterprise": None,
        }
        return self.post(payload)


def _user(account: SlackAccount) -> dict[str, str]:
    return {"id": account.id, "username": account.name, "name": account.name, "team_id": TEAM["id"]}


def block_actions(standin, account, channel, ts, message, button) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "user": _user(account),
        "api_app_id": "A0STANDIN",
        "token": "legacy-verification-token",
        "container": {
            "type": "message",
            "message_ts": ts,
            "channel_id": channel,
            "is_ephemeral": False,
        },
        "trigger_id": standin.new_trigger(),
        "team": TEAM,
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel, "name": "approvals"},
        "message": message,
        "state": {"values": {}},
        "response_url": standin.response_url(),
        "actions": [
            {
                "type": "button",
                "block_id": "countersign_actions",
                "action_id": button["action_id"],
                "text": button["text"],
                "value": button.get("value", ""),
                "style": button.get("style", ""),
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
