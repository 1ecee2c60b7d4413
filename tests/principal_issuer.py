"""An identity provider for tests: OIDC discovery and a JWKS over real HTTP, keys made here.

`Issuer` serves `/.well-known/openid-configuration` and `/jwks` on a free loopback port,
signs tokens with its current RSA key (PyJWT), can rotate to a new key (the old one
leaves the JWKS) and counts the requests it answered, so tests can see the cache work.
"""

from __future__ import annotations

import json
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.helpers import serve_in_background

AUDIENCE = "countersign-test"


def new_key() -> tuple[str, rsa.RSAPrivateKey]:
    return f"k-{uuid.uuid4().hex[:8]}", rsa.generate_private_key(
        public_exponent=65537, key_size=2048
    )


class Issuer:
    def __init__(self) -> None:
        self.kid, self.key = new_key()
        self.hits: dict[str, int] = {}
        self.down = False
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                issuer.hits[self.path] = issuer.hits.get(self.path, 0) + 1
                if issuer.down:
                    self.send_error(503)
                    return
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": issuer.url, "jwks_uri": issuer.url + "/jwks"}
                elif self.path == "/jwks":
                    body = issuer.jwks()
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = serve_in_background(self.server)

    def jwks(self) -> dict[str, Any]:
        public = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def rotate(self) -> None:
        """A new signing key; the old one is no longer published."""
        self.kid, self.key = new_key()

    def token(
        self,
        sub: str = "alice@example.com",
        *,
        key: rsa.RSAPrivateKey | None = None,
        kid: str | None = None,
        lifetime: int = 300,
        **claims: Any,
    ) -> str:
        now = int(time.time())
        payload = {
            "iss": self.url,
            "aud": AUDIENCE,
            "sub": sub,
            "iat": now,
            "exp": now + lifetime,
            **claims,
        }
        return jwt.encode(
            payload, key or self.key, algorithm="RS256", headers={"kid": kid or self.kid}
        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
