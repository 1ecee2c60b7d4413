"""What a reviewer sees of the demo's batch: cards with risk and controls on screen, keys
to clear the batch.

    .venv/bin/python bench/reviewer_screen.py [--keys "a a r 1 a r 2"] [--shots PREFIX]

The app (in this process, on a fresh SQLite database and REDIS_URL or BENCH_REDIS_URL)
gets the demo's data as `make run` seeds it (review/demo.py, the first six samples),
and Debian's Chromium logs in as the demo admin and starts a batch of five. For each
viewport (1280x720, 1440x900) it moves through the cards with `j`, as a keyboard
reviewer does, and counts the cards whose risk badge, Approve and Reject buttons are all
inside the viewport once the card is the current one. Then, at 1280x720, it presses
the keys given (space-separated Playwright key names; two rejections with a quick pick)
and checks that the batch is cleared: every card decided, with 0 clicks.
Screenshots go to test-artifacts/screen-<viewport>-card<N>.png.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from playwright.sync_api import sync_playwright  # noqa: E402

from bench.common import REDIS  # noqa: E402
from review.app_factory import create_app  # noqa: E402
from review.db import Database  # noqa: E402
from review.demo import demo_admin_password, ensure_demo  # noqa: E402
from review.migrate import upgrade  # noqa: E402
from tests.browser_support import ARTIFACTS, launch_options, live_server  # noqa: E402

VIEWPORTS = ((1280, 720), (1440, 900))


def demo_app(folder: Path):
    url = f"sqlite:///{folder / 'screen.db'}"
    db = Database(url)
    upgrade(db)
    db.dispose()
    redis_url = os.environ.get("REDIS_URL", REDIS)
    app = create_app(
        {
            "database_url": url,
            "redis_url": redis_url,
            "instance_dir": str(folder),
            "secret_key": "bench-screen-" + "x" * 32,
            "agent_rate": 0,
        }
    )
    svc = app.extensions["countersign"]
    svc.redis.client().flushdb()
    ensure_demo(svc)
    with app.app_context():
        from approval_queue.demo_agent import seed

        seed()
    return app, demo_admin_password(svc)


def on_screen(locator, height: int) -> bool:
    box = locator.bounding_box() if locator.count() else None
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= height


def start_batch(chromium, url: str, password: str, width: int, height: int):
    context = chromium.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.goto(url + "/login")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("button", name="Start batch", exact=True).click()
    page.wait_for_url(url + "/batch*")
    page.wait_for_timeout(300)
    return context, page


def count_on_screen(page, width: int, height: int, shots: str) -> tuple[int, int]:
    cards = page.locator("article.card")
    ok = 0
    for i in range(cards.count()):
        if i:
            page.keyboard.press("j")
        page.wait_for_timeout(400)
        card = cards.nth(i)
        shown = [
            on_screen(card.locator(".level").first, height),
            on_screen(card.get_by_role("button", name="Approve", exact=True), height),
            on_screen(card.get_by_role("button", name="Reject", exact=True), height),
        ]
        ok += all(shown)
        summary = card.locator("h2").first.inner_text()[:48]
        print(f"  {width}x{height} card {i + 1} ({summary}): risk, approve, reject {shown}")
        page.screenshot(path=str(ARTIFACTS / f"{shots}-{width}x{height}-card{i + 1}.png"))
    return ok, cards.count()


def clear_by_keys(page, keys: list[str]) -> list[str]:
    page.keyboard.press("Home")
    for _ in range(6):
        page.keyboard.press("k")
    for key in keys:
        page.keyboard.press(key)
        page.wait_for_timeout(600)
    cards = page.locator("article.card")
    return [
        " ".join(cards.nth(i).locator(".status-line, p.flash").all_inner_texts()).strip()
        for i in range(cards.count())
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", default="a a r 1 a r 2")
    parser.add_argument("--shots", default="screen")
    args = parser.parse_args()
    ARTIFACTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cs-screen-") as folder:
        app, password = demo_app(Path(folder))
        with live_server(app) as url, sync_playwright() as pw:
            chromium = pw.chromium.launch(**launch_options())
            for width, height in VIEWPORTS:
                context, page = start_batch(chromium, url, password, width, height)
                ok, total = count_on_screen(page, width, height, args.shots)
                print(f"{width}x{height}: {ok} of {total} cards with risk and controls on screen")
                page.get_by_role("button", name="Release batch").click()
                context.close()
            context, page = start_batch(chromium, url, password, 1280, 720)
            page.wait_for_timeout(3500)  # the first card read, as a person would
            keys = args.keys.split()
            outcomes = clear_by_keys(page, keys)
            page.screenshot(path=str(ARTIFACTS / f"{args.shots}-cleared.png"), full_page=True)
            print(f"keys pressed: {len(keys)} ({' '.join(keys)}), mouse clicks: 0")
            for n, text in enumerate(outcomes, 1):
                print(f"  card {n}: {text or '(undecided)'}")
            undecided = sum(1 for t in outcomes if not t)
            print(f"cleared: {'yes' if not undecided else f'no, {undecided} left'}")
            context.close()
            chromium.close()


if __name__ == "__main__":
    main()
