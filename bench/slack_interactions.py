"""Slack's 3 seconds: how long Countersign takes to answer a signed Approve click.

    .venv/bin/python bench/slack_interactions.py [--db sqlite|postgres] [--clicks 60]

Serves `gunicorn app:app` (bench/common.py) with Slack configured against the local
stand-in of tests/slack_standin.py (a real HTTP server in this process), posts
`--clicks` high-risk deferrals through the signed API, and sends one signed Approve
click for each (as Slack sends them: form-encoded payload, v0 signature) from one of
`--people` Slack users. A person's first click pays for `users.info` (a call to the
stand-in: a loopback round trip, where Slack's own is tens to hundreds of ms); later
ones find the e-mail cached. Printed: answer time p50/p99/max for first clicks ("cold")
and the rest ("warm"), each click's decision checked afterwards. Slack gives up after
3000 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REDIS, database, flask_cmd, gunicorn  # noqa: E402
from review.signing import sign_headers  # noqa: E402
from tests.slack_standin import (  # noqa: E402
    SIGNING_SECRET,
    TOKEN,
    SlackAccount,
    SlackStandIn,
    block_actions,
    slack_signature,
)

PASSWORD = "bench-password"


def defer(client: httpx.Client, secret: str, i: int) -> str:
    body = json.dumps(
        {
            "action": {"tool": "billing.refund", "args": {"invoice": f"INV-{i}", "amount": 900}},
            "summary": f"Refund $900 on INV-{i}",
            "on_behalf_of": {"id": "alice@example.com"},
            "risk": {"score": 60},
        }
    ).encode()
    headers = sign_headers(secret, f"msg_{uuid.uuid4().hex}", body)
    headers["Content-Type"] = "application/json"
    r = client.post("/api/v1/agents/bench-bot/deferrals", content=body, headers=headers)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def click(client: httpx.Client, standin: SlackStandIn, who: SlackAccount, d_id: str) -> float:
    """One signed Approve click on the deferral; the answer time in ms."""
    message = {"type": "message", "text": "", "blocks": [], "ts": "1.000001"}
    button = {"action_id": "countersign_approve", "value": d_id, "text": {"type": "plain_text"}}
    payload = block_actions(standin, who, "C0BENCH", "1.000001", message, button)
    body = urlencode({"payload": json.dumps(payload)}).encode()
    ts = str(int(time.time()))
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": slack_signature(SIGNING_SECRET, ts, body),
    }
    start = time.perf_counter()
    r = client.post("/integrations/slack/interactions", content=body, headers=headers)
    elapsed = (time.perf_counter() - start) * 1000
    assert r.status_code == 200, r.text
    return elapsed


def summary(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return (
        f"{name:<6} {len(values):4d} clicks  p50 {statistics.median(values):7.1f} ms  "
        f"p99 {p99:7.1f} ms  max {ordered[-1]:7.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--clicks", type=int, default=60)
    parser.add_argument("--people", type=int, default=6)
    args = parser.parse_args()
    people = [
        SlackAccount(f"U0BENCH{i}", f"reviewer{i}", f"reviewer{i}@example.com")
        for i in range(args.people)
    ]
    standin = SlackStandIn(people)
    try:
        with database(args.db) as url, tempfile.TemporaryDirectory(prefix="cs-bench-") as inst:
            env = {
                "DATABASE_URL": url,
                "REDIS_URL": REDIS,
                "COUNTERSIGN_INSTANCE_DIR": inst,
                "COUNTERSIGN_AGENT_RATE": "0",
                # The decision itself, not a hold for the undo window (no worker runs here
                # to let held decisions take effect, so the check below would see none).
                "COUNTERSIGN_UNDO_SECONDS": "0",
                "COUNTERSIGN_SLACK_BOT_TOKEN": TOKEN,
                "COUNTERSIGN_SLACK_SIGNING_SECRET": SIGNING_SECRET,
                "COUNTERSIGN_SLACK_CHANNEL": "C0BENCH",
                "COUNTERSIGN_SLACK_API_URL": standin.api_url,
            }
            flask_cmd(env, "db", "upgrade")
            for who in people:
                flask_cmd(env, "users", "create", who.name, "--role", "reviewer",
                          "--email", who.email, stdin=PASSWORD + "\n")  # fmt: skip
            secret = flask_cmd(env, "agents", "create", "bench-bot", "--owner", "reviewer0")
            secret = secret.split()[-1]
            with gunicorn("app:app", env) as base, httpx.Client(base_url=base, timeout=30) as c:
                ids = [defer(c, secret, i) for i in range(args.clicks)]
                cold, warm = [], []
                for n, d_id in enumerate(ids):
                    (cold if n < len(people) else warm).append(
                        click(c, standin, people[n % len(people)], d_id)
                    )
                statuses = [
                    c.get(
                        f"/api/v1/deferrals/{d_id}",
                        headers=sign_headers(secret, f"msg_{uuid.uuid4().hex}", b""),
                    ).json()["status"]
                    for d_id in ids
                ]
        print(f"{args.db}, one click at a time against gunicorn:")
        print(summary("cold", cold))
        print(summary("warm", warm))
        print(f"decided: {statuses.count('approved')} of {len(ids)} approved")
    finally:
        standin.close()


if __name__ == "__main__":
    main()
