"""What a live page's poll costs: the batch's poll when nothing changed, against the
batch page it saves re-reading (review/web/live_pages.py).

    .venv/bin/python bench/live_poll.py [--items 5] [--polls 2000] [--pages 200]

The app runs in this process (Flask's test client: no HTTP, so the figures are the
server's own time per request) on a fresh SQLite database and BENCH_REDIS_URL. A
reviewer claims a batch; then the poll is asked `--polls` times with nothing changed,
and the batch page `--pages` times. It prints p50 and p99 of each, and how many
database connections each took (SQLAlchemy's pool checkouts): the poll must take none.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import event  # noqa: E402

from bench.common import REDIS  # noqa: E402
from review.agents.registry import create_agent  # noqa: E402
from review.app_factory import create_app  # noqa: E402
from review.db import Database  # noqa: E402
from review.migrate import upgrade  # noqa: E402
from review.users import create_user  # noqa: E402
from tests.helpers import AgentClient, logged_in, refund  # noqa: E402


def timed(get, url: str, n: int, status: int) -> list[float]:
    took = []
    for _ in range(n):
        start = time.perf_counter()
        answer = get(url)
        took.append((time.perf_counter() - start) * 1000)
        assert answer.status_code == status, (url, answer.status_code)
    return took


def summary(name: str, took: list[float], checkouts: int) -> str:
    took = sorted(took)
    p99 = took[min(len(took) - 1, int(len(took) * 0.99))]
    return (
        f"{name}: {len(took)} requests, p50 {statistics.median(took):.2f} ms, "
        f"p99 {p99:.2f} ms, database connections taken: {checkouts}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=5)
    parser.add_argument("--polls", type=int, default=2000)
    parser.add_argument("--pages", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cs-bench-live-") as folder:
        url = f"sqlite:///{Path(folder) / 'live.db'}"
        db = Database(url)
        upgrade(db)
        db.dispose()
        app = create_app(
            {
                "database_url": url,
                "redis_url": REDIS,
                "instance_dir": folder,
                "secret_key": "bench-live-" + "x" * 32,
                "agent_rate": 0,
            }
        )
        svc = app.extensions["countersign"]
        svc.redis.client().flushdb()
        with svc.db.write() as session:
            create_user(session, "rita", "reviewer", "correct horse battery")
            create_user(session, "olivia", "reviewer", "correct horse battery")
            created = create_agent(session, svc.box, "billing-bot", ["olivia"])
        agent = AgentClient(app.test_client(), "billing-bot", created.secret)
        for n in range(args.items):
            agent.defer(refund(summary=f"Refund {n}"))
        rita = logged_in(app, "rita")
        rita.post("/batch/start")
        page = rita.get("/batch").get_data(as_text=True)
        poll = re.search(r'id="live"[^>]*hx-get="([^"]+)"', page).group(1).replace("&amp;", "&")
        live = re.findall(r'<article[^>]*data-id="([^"]+)"[^>]*data-live', page)
        poll += "&ids=" + ",".join(live)  # as static/review.js sends it

        counted = {"n": 0}

        def checkout(*_args):
            counted["n"] += 1

        event.listen(svc.db.engine, "checkout", checkout)
        polls = timed(rita.get, poll, args.polls, 204)
        poll_checkouts, counted["n"] = counted["n"], 0
        pages = timed(rita.get, "/batch", args.pages, 200)
        page_checkouts = counted["n"]
        event.remove(svc.db.engine, "checkout", checkout)
        print(summary("poll, nothing changed", polls, poll_checkouts))
        print(summary("batch page", pages, page_checkouts))
        svc.close()


if __name__ == "__main__":
    main()
