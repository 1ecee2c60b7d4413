"""A live server on a free port and a Chromium driven by Playwright, for the browser tests.

Debian's /usr/bin/chromium when it is there (`make test` installs it, or says how);
otherwise a browser Playwright downloaded earlier, if there is one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect
from werkzeug.serving import make_server

from tests.helpers import serve_in_background

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "correct horse battery"  # the people fixture's
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _closing_bodies(app):
    """`app`, with each response body closed even when the client hangs up mid-send.

    Werkzeug's dev server closes a body only after draining the socket, and that drain
    raises on a reset connection (Chromium resets one when a page moves on while a static
    file is still being sent): the file (static/review.js, say) is then left for the
    garbage collector, and its ResourceWarning fails whatever test is running. The body
    here is a generator, so dropping it closes the file underneath at once.
    """

    def closing_app(environ, start_response):
        body = app(environ, start_response)

        def chunks():
            try:
                yield from body
            finally:
                if hasattr(body, "close"):
                    body.close()

        return chunks()

    return closing_app


@contextmanager
def live_server(app, port: int = 0) -> Iterator[str]:
    """`app` served on 127.0.0.1 (on `port`, or on a free one); yields its base URL."""
    server = make_server("127.0.0.1", port, _closing_bodies(app), threaded=True)
    thread = serve_in_background(server)
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


@contextmanager
def own_windows(chromium: Browser) -> Iterator[Browser]:
    """`chromium` (the module's, shared by its tests) for one test: the windows the test
    opens (its browser contexts) are closed when it ends, before its live server is."""
    try:
        yield chromium
    finally:
        for context in chromium.contexts:
            context.close()


def launch_options() -> dict:
    options: dict = {"headless": True, "args": CHROMIUM_ARGS}
    if os.path.exists(CHROMIUM):
        options["executable_path"] = CHROMIUM
    return options


def logged_in_page(
    chromium: Browser,
    url: str,
    name: str,
    size: tuple[int, int] = (1280, 720),
    *,
    console_errors: list[str] | None = None,
    dialogs_fail: bool = True,
) -> Page:
    """A new window of `size` in which `name` has logged in at `url` (on the queue).

    Console errors go into `console_errors` when given; a dialog (alert, confirm) fails
    the test unless `dialogs_fail` is False.
    """
    page = chromium.new_context(viewport={"width": size[0], "height": size[1]}).new_page()
    if dialogs_fail:
        page.on("dialog", lambda d: pytest.fail(f"a dialog opened: {d.message}"))
    if console_errors is not None:
        page.on("console", lambda m: m.type == "error" and console_errors.append(m.text))
    page.goto(url + "/login")
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(url + "/queue")
    return page


def settled(locator: Locator) -> Locator:
    """`locator` once it is on screen and htmx has settled what it swapped in.

    htmx shows swapped-in elements at once but binds their hx-triggers only when it
    settles them (20 ms later, when it takes their `htmx-added` class off). Playwright can
    type in between, and the input then asks for nothing: a lazily fetched editor's first
    fill never got its preview (CI, test_edit_browser, once).
    """
    expect(locator).to_be_visible()
    locator.page.wait_for_function("() => !document.querySelector('.htmx-added, .htmx-settling')")
    return locator


def start_batch(page: Page) -> None:
    """Start batch from the queue, once the queue's scripts have bound its form, and
    return once the batch page's have bound its own.

    Start batch is a plain form post that loads a new page, and htmx and review.js are
    deferred scripts: Playwright can click a card's button while the page is still being
    parsed, before htmx has bound its forms, and the click then posts natively (the
    page without JS: a redirect and a flash instead of the card's answer). CI failed
    test_reject_without_a_reason_keeps_the_card_and_puts_focus_on_the_reason so, once.
    """
    to_a_new_page(page, page.get_by_role("button", name="Start batch", exact=True))


def to_a_new_page(page: Page, button: Locator) -> None:
    """Click `button`, a plain form's (Start batch, the item page's Claim), once this page's
    scripts have bound it, and return once the page it loads has bound its own."""
    page.wait_for_load_state("load")
    with page.expect_navigation(wait_until="load"):
        button.click()


def window_shot(page: Page, prefix: str, name: str) -> None:
    """The window as test-artifacts/PREFIX-NAME-WxH.png."""
    ARTIFACTS.mkdir(exist_ok=True)
    size = page.viewport_size
    page.screenshot(path=str(ARTIFACTS / f"{prefix}-{name}-{size['width']}x{size['height']}.png"))
