"""What a live page's poll costs: the batch's poll when nothing changed, against the
batch page it saves re-reading (review/web/live_pages.py).

    .venv/bin/python bench/live_poll.py [--items 5] [--polls 2000] [--pages 200] [--browser]

The app runs in this process (Flask's test client: no HTTP, so the figures are the
server's own time per request) on a fresh SQLite database and BENCH_REDIS_URL. A
reviewer claims a batch; then the poll is asked `--polls` times with nothing changed,
and the batch page `--pages` times. It prints p50 and p99 of each, and how many
database connections each took (SQLAlchemy's pool checkouts): the poll must take none.
With --browser it then serves the app over HTTP and opens the batch in Debian's
Chromium: for each item, the reviewer's claim lapses and another reviewer takes it,
and it measures the time until the open page shows it (the promise: within 2 s).
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
    parser.add_argument("--browser", action="store_true")
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
        if args.browser:
            print(seen_in_browser(app, svc, args.items))
        svc.close()


def seen_in_browser(app, svc, items: int) -> str:
    """Seconds from a change elsewhere to the open batch showing it, per item."""
    from datetime import timedelta

    from playwright.sync_api import expect, sync_playwright
    from sqlalchemy import update

    from review.models import Deferral, utcnow
    from review.reviewing.claims import Holder, claim_batch
    from tests.browser_support import launch_options, live_server

    with svc.db.write() as session:
        other = create_user(session, "sam", "reviewer", "correct horse battery")
        session.flush()
        sam = Holder(other.id, "sam", frozenset({"sam"}))
    delays = []
    with live_server(app) as url, sync_playwright() as pw:
        chromium = pw.chromium.launch(**launch_options())
        page = chromium.new_page(viewport={"width": 1280, "height": 720})
        page.goto(url + "/login")
        page.get_by_label("Username").fill("rita")
        page.get_by_label("Password").fill("correct horse battery")
        page.get_by_role("button", name="Log in").click()
        page.goto(url + "/batch")
        cards = page.locator("article.card[data-live]")
        ids = cards.evaluate_all("cs => cs.map(c => c.dataset.id)")
        for d_id in ids[:items]:
            with svc.db.write() as session:
                session.execute(
                    update(Deferral)
                    .where(Deferral.id == d_id)
                    .values(lease_expires_at=utcnow() - timedelta(seconds=1))
                )
            start = time.perf_counter()
            claim_batch(svc, sam)
            card = page.locator(f"#card-{d_id}")
            expect(card).to_contain_text("Another reviewer holds it", timeout=10_000)
            delays.append(time.perf_counter() - start)
            time.sleep(0.37)  # not in step with the poll
        chromium.close()
    return (
        f"seen in the browser: {len(delays)} changes, p50 {statistics.median(delays):.2f} s, "
        f"max {max(delays):.2f} s (poll every 1.5 s)"
    )


if __name__ == "__main__":
    main()
