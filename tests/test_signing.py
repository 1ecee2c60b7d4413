"""Standard Webhooks signatures: ours agree with the standardwebhooks package, byte for byte."""

import base64
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook

from review.agents.registry import new_secret
from review.signing import SignatureError, sign_headers, verify

BODY = b'{"summary":"caf\xc3\xa9"}'


def test_a_request_signed_by_the_standardwebhooks_package_verifies():
    secret = new_secret()
    now = int(time.time())
    signature = Webhook(secret).sign("msg_1", datetime.fromtimestamp(now, UTC), BODY.decode())
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(now), "webhook-signature": signature}
    assert verify([secret], headers, BODY) == "msg_1"


def test_our_signature_verifies_with_the_standardwebhooks_package():
    secret = new_secret()
    headers = sign_headers(secret, "msg_2", BODY)
    assert Webhook(secret).verify(BODY, headers) == {"summary": "café"}


def test_any_of_several_signatures_or_secrets_may_match_for_rotation():
    old, new = new_secret(), new_secret()
    headers = sign_headers(new, "m", BODY)
    headers["webhook-signature"] = "v1,AAAA " + headers["webhook-signature"]
    assert verify([old, new], headers, BODY) == "m"


@pytest.mark.parametrize(
    "change",
    [
        {"webhook-id": ""},
        {"webhook-timestamp": "abc"},
        {"webhook-timestamp": "-5"},
        {"webhook-timestamp": "1e9"},
        {"webhook-timestamp": str(int(time.time()) - 301)},
        {"webhook-timestamp": str(int(time.time()) + 301)},
        {"webhook-signature": "v1,not base64!!"},
        {"webhook-signature": "v2," + base64.b64encode(b"x" * 32).decode()},
        {"webhook-signature": "garbage"},
        {"webhook-signature": ","},
        {"webhook-signature": "v1," + base64.b64encode(b"x" * 32).decode()},
        {"webhook-signature": "v1," + "A" * 5000},
    ],
)
def test_every_malformed_or_wrong_header_is_one_signature_error(change):
    secret = new_secret()
    headers = {**sign_headers(secret, "m", BODY), **change}
    with pytest.raises(SignatureError):
        verify([secret], headers, BODY)


def test_a_changed_body_does_not_verify():
    secret = new_secret()
    headers = sign_headers(secret, "m", BODY)
    with pytest.raises(SignatureError):
        verify([secret], headers, BODY + b" ")
