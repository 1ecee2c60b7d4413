"""A live server on a free port and a Chromium driven by Playwright, for the browser tests.

Debian's /usr/bin/chromium when it is there (`make test` installs it, or says how);
otherwise a browser Playwright downloaded earlier, if there is one.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from werkzeug.serving import make_server

CHROMIUM = "/usr/bin/chromium"
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


@contextmanager
def live_server(app, port: int = 0) -> Iterator[str]:
    """`app` served on 127.0.0.1 (on `port`, or on a free one); yields its base URL."""
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


def launch_options() -> dict:
    options: dict = {"headless": True, "args": CHROMIUM_ARGS}
    if os.path.exists(CHROMIUM):
        options["executable_path"] = CHROMIUM
    return options
