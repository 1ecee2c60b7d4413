"""Server time of a deferral the policy decides at intake, in-process (issue 16: p50 < 10 ms).

    .venv/bin/python bench/policy_allow.py [--db sqlite|postgres|both] [--requests 300]
                                           [--rules N]

One app (Flask's test client, no network) with a policy that allows `files.get` and
denies a public ACL; an agent with a callback URL, so every decision writes its
callback row too. Each request is timed from the signed request to the answer: the
signature check, the schema, the diff, the policy, the receipt's signature, the one
transaction and the wake-ups. The same for a deferral a person must decide, for
comparison. `--rules N`: the default policy with those two rules and generated ones,
N in all (bench/policy_rules.py), as a big policy would judge them.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REDIS, database  # noqa: E402
from bench.policy_rules import DECIDING, generated_policy  # noqa: E402
from review.app_factory import create_app  # noqa: E402
from review.migrate import upgrade  # noqa: E402
from review.signing import sign_headers  # noqa: E402


def body(tool: str, **args) -> bytes:
    return json.dumps(
        {
            "action": {"tool": tool, "args": {"path": "/reports/q3.pdf", **args}},
            "summary": "Read the Q3 report",
            "on_behalf_of": {"id": "alice@example.com"},
            "before": {"path": "/reports/q3.pdf", "opened": 0},
            "after": {"path": "/reports/q3.pdf", "opened": 1},
        }
    ).encode()


def run(kind: str, requests: int, rules: int = 0) -> None:
    with database(kind) as url, tempfile.TemporaryDirectory(prefix="cs-") as folder:
        policy = Path(folder) / "policy.toml"
        policy.write_text(generated_policy(rules) if rules else DECIDING)
        app = create_app(
            {
                "database_url": url,
                "redis_url": REDIS,
                "instance_dir": folder,
                "secret_key": "bench-secret-key-" + "x" * 32,
                "policy_file": str(policy),
                "agent_rate": 0,
                "agent_max_pending": 0,
                "breaker_flood": "0",
                "allow_private_callbacks": True,
            }
        )
        svc = app.extensions["countersign"]
        upgrade(svc.db)
        from review.agents.registry import create_agent
        from review.users import create_user

        with svc.db.write() as session:
            create_user(session, "olivia", "admin", "correct horse battery")
            secret = create_agent(
                session,
                svc.box,
                "bench-bot",
                ["olivia"],
                callback_url="http://127.0.0.1:9/hooks",
                allow_private_callbacks=True,
            ).secret
        client = app.test_client()
        cases = {
            "allow": body("files.get"),
            "deny": body("s3.put", acl="public-read"),
            "ask": body("files.put"),
        }
        for name, raw in cases.items():
            times = []
            for _ in range(requests):
                headers = sign_headers(secret, f"msg_{uuid.uuid4().hex}", raw, at=time.time())
                started = time.perf_counter()
                response = client.post(
                    "/api/v1/agents/bench-bot/deferrals",
                    data=raw,
                    headers={**headers, "Content-Type": "application/json"},
                )
                times.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 202, response.get_json()
            status = response.get_json()["status"]
            cut = statistics.quantiles(times, n=100)
            print(
                f"{kind:8} {name:5} ({status:8}) p50 {statistics.median(times):5.2f} ms  "
                f"p90 {cut[89]:5.2f} ms  p99 {cut[98]:5.2f} ms  n={requests}"
            )
        svc.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rules", type=int, default=0, help="a policy of N rules")
    args = parser.parse_args()
    for kind in ("sqlite", "postgres") if args.db == "both" else (args.db,):
        run(kind, args.requests, args.rules)


if __name__ == "__main__":
    main()
