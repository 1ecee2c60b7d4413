"""The browser tests' live server: a client hanging up mid-send leaves nothing open."""

import gc
import socket
import struct

from tests.browser_support import live_server


def _get_then_reset(base_url: str, path: str) -> bytes:
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        first = sock.recv(256)
        # Linger 0: closing sends RST, as Chromium does when a page moves on mid-send.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return first


def test_a_static_file_is_closed_when_the_client_resets_mid_send(app):
    with live_server(app) as url:
        for _ in range(30):
            assert _get_then_reset(url, "/static/review.js").startswith(b"HTTP/1.1 200")
    # Leaving the server joins its request threads (server_close), so every drain is over.
    gc.collect()  # an unclosed file would warn here, and the warning fails the test
