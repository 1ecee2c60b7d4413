"""GET /metrics: Prometheus text format, for Prometheus on this host or with a token.

Who may read it (docs/METRICS.md): a client connected straight from a loopback address
(127.0.0.0/8, ::1) with no proxy header (X-Forwarded-For, Forwarded, X-Real-IP), so that
a reverse proxy on the same host does not open it to the world; and anyone sending
`Authorization: Bearer <COUNTERSIGN_METRICS_TOKEN>` when that is set. Others get 403
(401 when a token is set). The metrics name no agent and no person, but they tell how
busy the service is and how its callbacks fare, so they are not public.

The answer is never a 500: a source that cannot be read is reported in the text
(`countersign_scrape_source_up`), and anything else that fails answers 503.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging

from flask import Blueprint, Response, request
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from review.observability.exposition import exposition
from review.services import current_services

log = logging.getLogger(__name__)
bp = Blueprint("metrics", __name__)
PROXY_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")


@bp.get("/metrics")
def metrics() -> Response:
    try:
        svc = current_services()
        refusal = _refusal(svc.settings.metrics_token)
        if refusal is not None:
            return refusal
        return Response(exposition(svc), content_type=CONTENT_TYPE_PLAIN_0_0_4)
    except Exception:
        log.exception("metrics: the scrape failed")
        return _text("the metrics could not be gathered; see the service's log\n", 503)


def _refusal(token: str) -> Response | None:
    """None when this request may read the metrics; the answer to give it otherwise."""
    if token:
        given = request.headers.get("Authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return None
    if _straight_from_loopback():
        return None
    if token:
        response = _text("send the metrics token: Authorization: Bearer <token>\n", 401)
        response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return _text(
        "metrics are served to loopback clients only; set COUNTERSIGN_METRICS_TOKEN to "
        "scrape from elsewhere\n",
        403,
    )


def _straight_from_loopback() -> bool:
    """The connecting address (before any ProxyFix rewrote it) is loopback, and no proxy
    header says the request came from elsewhere."""
    if any(name in request.headers for name in PROXY_HEADERS):
        return False
    original = request.environ.get("werkzeug.proxy_fix.orig", {})
    peer = original.get("REMOTE_ADDR") or request.environ.get("REMOTE_ADDR") or ""
    try:
        address = ipaddress.ip_address(peer.split("%")[0])
    except ValueError:  # a unix socket, or nothing: not known to be local
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _text(body: str, status: int) -> Response:
    return Response(body, status=status, content_type="text/plain; charset=utf-8")
