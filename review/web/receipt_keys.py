"""GET /.well-known/jwks.json: the public keys that approval receipts are signed with.

Public and cacheable: a target system fetches it once in a while and then verifies
receipts offline (PROTOCOL.md section 13, review/reviewing/receipts.py). Retired keys
stay listed while receipts they signed may still be valid.
"""

from __future__ import annotations

from flask import Blueprint, jsonify

from review.reviewing.receipts import jwks
from review.services import current_services

bp = Blueprint("receipt_keys", __name__)


@bp.get("/.well-known/jwks.json")
def jwks_json():
    response = jsonify(jwks(current_services().settings))
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
