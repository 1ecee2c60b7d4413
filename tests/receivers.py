"""A real HTTP receiver for callbacks: answers from a script and keeps what it got."""

import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.helpers import serve_in_background


class Receiver:
    """A local HTTP endpoint that answers from a script and keeps what it got."""

    def __init__(self, script):
        self.script = list(script)  # (status, headers, delay) per request; the last repeats
        self.requests = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append((dict(self.headers), body, self.path))
                status, headers, delay = (
                    receiver.script.pop(0) if len(receiver.script) > 1 else receiver.script[0]
                )
                time.sleep(delay)  # a slow receiver is what the script asks for: a sleep
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        self.thread = serve_in_background(self.server)

    def close(self):
        self.server.shutdown()
        self.server.server_close()
