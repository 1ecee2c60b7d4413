"""The demo agent's callback receiver: the agent's half of the loop, for `make run`.

`flask --app app serve` with COUNTERSIGN_DEMO=1 starts it as a child process on a
loopback port and sets its URL as the demo agent's callback URL, so a newcomer sees a
decision travel back and an execution report come in (on the agent's page, and on the
deferral's). It is written as an agent runtime would write it, with nothing from the
server but the demo's list of requests it sends: the project's client library
(clients/python, `countersign_client`) does the work.

- `POST /callbacks`: `verify_callback` checks the Standard Webhooks signature and the
  timestamp (400 otherwise), `SeenIds` drops a repeat of a webhook-id, and the answer
  (200) goes back at once: a callback is a wake-up, not a command.
- Then, on a thread of its own, for `deferral.decided`: read the deferral with a signed
  GET, run it only if `ensure_runnable` agrees (approved, not executed, still valid,
  and the action is one this agent asked for: for an edited approval, the original),
  "run" it in make-believe (nothing leaves the machine) and report the execution with
  `report_execution`. A rejection, expiry or kill is logged and nothing runs.
- `GET /healthz` answers 200 once it listens; `GET /` lists what it did lately (JSON).

Run alone: `python -m review.demo_receiver --port 5001 --service http://127.0.0.1:5000
--secret-file instance/demo-agent.secret`.
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import threading
from collections import deque
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from countersign_client import (
    Countersign,
    CountersignError,
    InvalidCallback,
    SeenIds,
    action_digest,
    ensure_runnable,
    verify_callback,
)

from review.demo import DEMO_AGENT, SAMPLES

log = logging.getLogger("countersign.demo_receiver")
MAX_BODY = 1024 * 1024
KEPT = 50  # what GET / lists


def requested_actions() -> dict[str, dict[str, Any]]:
    """The actions this agent asks for (the demo's samples), by their digest."""
    return {action_digest(s["action"]["tool"], s["action"]["args"]): s["action"] for s in SAMPLES}


class DemoAgent:
    """What the receiver does with a decision: check it, run it in make-believe, report."""

    def __init__(self, client: Countersign):
        self.client = client
        self.asked = requested_actions()
        self.done: deque[dict[str, Any]] = deque(maxlen=KEPT)
        self.work: queue.Queue[str] = queue.Queue()

    def note(self, deferral_id: str, what: str) -> None:
        at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.done.appendleft({"at": at, "deferral": deferral_id, "what": what})
        log.info("%s: %s", deferral_id, what)

    def handle(self, deferral_id: str) -> None:
        deferral = self.client.get(deferral_id)
        if deferral.status != "approved":
            self.note(deferral_id, f"{deferral.status}: nothing to run")
            return
        decision = deferral.decision
        requested = (
            decision.original_action_digest
            if decision and decision.edited
            else deferral.action_digest
        )
        asked = self.asked.get(requested or "")
        if asked is None:
            self.note(deferral_id, "approved, but not an action this agent asked for: not run")
            return
        approval = ensure_runnable(deferral, asked["tool"], asked["args"])
        result = {
            "make_believe": True,
            "did": f"pretended to run {approval.action['tool']}; nothing left this machine",
            "args": approval.args,
        }
        self.client.report_execution(approval, outcome="succeeded", result=result)
        self.note(deferral_id, f"approved: ran {approval.action['tool']} (make-believe), reported")

    def run_forever(self) -> None:
        while True:
            deferral_id = self.work.get()
            try:
                self.handle(deferral_id)
            except CountersignError as exc:  # refused to run, or the service said no
                self.note(deferral_id, f"not run: {type(exc).__name__}: {exc}")
            except Exception:  # a demo keeps going; the traceback goes to the log
                log.exception("%s: failed", deferral_id)


def make_handler(secret: str, agent: DemoAgent, seen: SeenIds):
    class Handler(BaseHTTPRequestHandler):
        server_version = "countersign-demo-receiver"

        def _answer(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path == "/healthz":
                self._answer(200, {"status": "ok"})
            elif self.path == "/":
                self._answer(200, {"agent": DEMO_AGENT, "recent": list(agent.done)})
            else:
                self._answer(404, {"error": "not found"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path != "/callbacks":
                self._answer(404, {"error": "not found"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= MAX_BODY:
                self._answer(400, {"error": "no body, or too large"})
                return
            body = self.rfile.read(length)
            try:
                event = verify_callback(secret, list(self.headers.items()), body)
            except InvalidCallback as exc:
                log.warning("refused a callback: %s", exc)
                self._answer(400, {"error": "invalid callback"})
                return
            if not seen.add(event["webhook_id"]):
                self._answer(200, {"status": "repeat"})
                return
            if event["type"] == "deferral.decided":
                agent.work.put(event["data"]["id"])
            else:
                agent.note("-", f"{event['type']}: {event['data'].get('reason', '')}")
            self._answer(200, {"status": "received"})

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            log.debug(format, *args)

    return Handler


def serve(host: str, port: int, service_url: str, secret: str) -> None:
    agent = DemoAgent(Countersign(service_url, agent=DEMO_AGENT, secret=secret))
    threading.Thread(target=agent.run_forever, name="demo-agent", daemon=True).start()
    server = ThreadingHTTPServer((host, port), make_handler(secret, agent, SeenIds()))
    log.info("demo receiver for %s listening on http://%s:%d/callbacks", DEMO_AGENT, host, port)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--service", required=True, help="Countersign's base URL")
    parser.add_argument("--secret-file", required=True, type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="demo receiver: %(message)s")
    try:
        serve(args.host, args.port, args.service, args.secret_file.read_text().strip())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
