"""Given the service's JWKS, the client's gate runs only on an approval whose receipt
verifies (PROTOCOL.md sections 9 and 13), against a real Countersign."""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from countersign_client import Countersign, ReceiptRefused, RetryPolicy, verify_receipt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.client_support import decide_now, next_deferral
from tests.helpers import reviewer

pytest_plugins = ["tests.client_server"]

QUICK = RetryPolicy(first_delay=0.05, max_delay=0.2, poll_max_delay=0.2)


def _published_jwks(server) -> dict:
    response = httpx.get(f"{server.base_url}/.well-known/jwks.json", timeout=10)
    assert response.status_code == 200
    return response.json()


def _another_jwks(kid: str) -> dict:
    """A JWKS with the service's kid but a key the service never held."""
    raw = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA"}]}


def _client(server, registered, jwks) -> Countersign:
    return Countersign(
        server.base_url,
        agent=registered.slug,
        secret=registered.secret,
        on_behalf_of="alice@example.com",
        retry=QUICK,
        jwks=jwks,
    )


def _gate(cs: Countersign, ran: list) -> None:
    with cs.gate(tool="crm.note", args={"text": "hi"}, summary="A note", timeout=30) as ok:
        ran.append(ok.args)
        ok.result = {"done": True}


@pytest.fixture
def registered(make_agent):
    return make_agent("receipt-bot")


def test_the_gate_runs_when_the_receipt_verifies_with_the_published_jwks(
    countersign_server, registered, svc
):
    jwks = _published_jwks(countersign_server)
    ran: list = []
    with _client(countersign_server, registered, jwks) as cs, ThreadPoolExecutor(1) as pool:
        gate = pool.submit(_gate, cs, ran)
        d_id = next_deferral(svc)
        assert decide_now(svc, reviewer(svc, "rita"), d_id, "approve") == "approved"
        gate.result(timeout=30)
        receipt = cs.get(d_id).decision.receipt
    assert ran == [{"text": "hi"}]
    claims = verify_receipt(receipt, jwks)
    assert claims["sub"] == d_id and claims["agent"] == registered.slug


def test_the_gate_refuses_an_approval_whose_receipt_another_key_would_have_signed(
    countersign_server, registered, svc
):
    kid = _published_jwks(countersign_server)["keys"][0]["kid"]
    ran: list = []
    with (
        _client(countersign_server, registered, _another_jwks(kid)) as cs,
        ThreadPoolExecutor(1) as pool,
    ):
        gate = pool.submit(_gate, cs, ran)
        d_id = next_deferral(svc)
        decide_now(svc, reviewer(svc, "rita"), d_id, "approve")
        with pytest.raises(ReceiptRefused, match="receipt does not hold"):
            gate.result(timeout=30)
        assert cs.get(d_id).execution is None  # nothing ran, nothing was reported
    assert ran == []
