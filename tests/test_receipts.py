"""Approval receipts (PROTOCOL.md section 13): every approval is signed, and a target
system checks it offline with the published keys alone (`verify_receipt`)."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from countersign_client.receipts import InvalidReceipt, verify_receipt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from review.audit.checkpoints import cached_key
from review.models import AuditEvent, Deferral, OutboxEvent
from review.reviewing import receipts
from review.reviewing.claims import claim_batch
from review.reviewing.decisions import decide
from review.settings import SettingsError
from tests.helpers import AgentClient, approved, refund, reviewer

ISSUER = "http://127.0.0.1:5000"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _parts(receipt: str) -> tuple[dict, dict, str]:
    header, payload, signature = receipt.split(".")
    return json.loads(_unb64url(header)), json.loads(_unb64url(payload)), signature


def _reencoded(receipt: str, *, header: dict | None = None, claims: dict | None = None) -> str:
    """The receipt with its header or claims replaced and its signature kept."""
    old_header, old_claims, signature = _parts(receipt)
    encode = lambda value: _b64url(json.dumps(value, separators=(",", ":")).encode())  # noqa: E731
    return f"{encode(header or old_header)}.{encode(claims or old_claims)}.{signature}"


def _signed_with(private: Ed25519PrivateKey, header: dict, claims: dict) -> str:
    encode = lambda value: _b64url(json.dumps(value, separators=(",", ":")).encode())  # noqa: E731
    signing_input = f"{encode(header)}.{encode(claims)}"
    return f"{signing_input}.{_b64url(private.sign(signing_input.encode()))}"


def _jwks(client) -> dict:
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "public, max-age=300"
    return response.get_json()


def _seconds(rfc3339: str) -> int:
    return int(datetime.strptime(rfc3339, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())


def _event_payloads(svc, event_type: str, deferral_id: str) -> list[dict]:
    with svc.db.read() as session:
        payloads = session.scalars(
            select(AuditEvent.payload).where(
                AuditEvent.event_type == event_type, AuditEvent.deferral_id == deferral_id
            )
        ).all()
    return [json.loads(p) for p in payloads]


@pytest.fixture
def rita(svc):
    return reviewer(svc, "rita")


def test_it_gives_every_approval_a_receipt_that_the_published_keys_verify(svc, agent, client, rita):
    resource = approved(svc, agent, rita)
    receipt = resource["decision"]["receipt"]
    assert isinstance(receipt, str) and receipt.count(".") == 2
    jwks = _jwks(client)

    claims = verify_receipt(receipt, jwks, issuer=ISSUER, action_digest=resource["action_digest"])

    assert claims == {
        "iss": ISSUER,
        "sub": resource["id"],
        "jti": claims["jti"],
        "iat": _seconds(resource["decision"]["decided_at"]),
        "exp": _seconds(resource["decision"]["valid_until"]),
        "agent": "billing-bot",
        "action_digest": resource["action_digest"],
        "policy_version": resource["risk"]["policy_version"],
        "approvers": ["rita"],
        "edited": False,
    }
    assert claims["jti"].startswith("rct_")
    header, _, _ = _parts(receipt)
    assert header == {"alg": "EdDSA", "kid": jwks["keys"][0]["kid"], "typ": "JWT"}


def test_the_jwks_lists_ed25519_keys_named_by_their_thumbprint(client):
    (key,) = _jwks(client)["keys"]
    assert set(key) == {"kty", "crv", "x", "kid", "alg", "use"}
    assert (key["kty"], key["crv"], key["alg"], key["use"]) == ("OKP", "Ed25519", "EdDSA", "sig")
    assert len(_unb64url(key["x"])) == 32
    # RFC 7638: SHA-256 of the required members in lexicographic order, no whitespace.
    required = f'{{"crv":"Ed25519","kty":"OKP","x":"{key["x"]}"}}'.encode()
    assert key["kid"] == _b64url(hashlib.sha256(required).digest())


def test_the_receipt_key_is_its_own_and_kept_private(app, svc, client):
    kid = _jwks(client)["keys"][0]["kid"]
    path = Path(svc.settings.receipt_key_file)
    assert path.parent == Path(svc.settings.instance_dir)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    audit_public = cached_key(svc.settings.audit_key_file).public_raw
    assert kid != receipts.public_jwk(audit_public)["kid"]


def test_a_named_key_file_is_used(make_app, tmp_path):
    private = Ed25519PrivateKey.generate()
    path = tmp_path / "receipts.pem"
    path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    app = make_app(receipt_key_file=str(path))
    (key,) = _jwks(app.test_client())["keys"]
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert key["x"] == _b64url(raw)


def test_it_fails_with_another_key(svc, agent, client, rita):
    receipt = approved(svc, agent, rita)["decision"]["receipt"]
    jwks = _jwks(client)
    other = Ed25519PrivateKey.generate().public_key()
    other_x = _b64url(
        other.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    swapped = {"keys": [{**jwks["keys"][0], "x": other_x}]}
    with pytest.raises(InvalidReceipt, match="signature does not verify"):
        verify_receipt(receipt, swapped)


def test_a_receipt_forged_with_another_key_under_the_published_kid_fails(svc, agent, client, rita):
    receipt = approved(svc, agent, rita)["decision"]["receipt"]
    header, claims, _ = _parts(receipt)
    forged = _signed_with(Ed25519PrivateKey.generate(), header, {**claims, "exp": 2**40})
    with pytest.raises(InvalidReceipt, match="signature does not verify"):
        verify_receipt(forged, _jwks(client))


@pytest.mark.parametrize(
    "change",
    [
        {"action_digest": "sha256:" + "0" * 64},
        {"approvers": ["mallory"]},
        {"exp": 2**40},
        {"sub": "dfr_SOMETHINGELSE"},
        {"edited": True},
    ],
)
def test_it_fails_when_a_claim_is_edited(svc, agent, client, rita, change):
    receipt = approved(svc, agent, rita)["decision"]["receipt"]
    _, claims, _ = _parts(receipt)
    with pytest.raises(InvalidReceipt, match="signature does not verify"):
        verify_receipt(_reencoded(receipt, claims={**claims, **change}), _jwks(client))


def test_it_fails_with_a_kid_the_jwks_does_not_hold(svc, agent, client, rita):
    receipt = approved(svc, agent, rita)["decision"]["receipt"]
    header, _, _ = _parts(receipt)
    jwks = _jwks(client)
    with pytest.raises(InvalidReceipt, match="no key"):
        verify_receipt(_reencoded(receipt, header={**header, "kid": "not-a-key"}), jwks)
    with pytest.raises(InvalidReceipt, match="no key"):
        verify_receipt(receipt, {"keys": []})


@pytest.mark.parametrize("alg", ["none", "HS256", "ES256", None])
def test_it_fails_with_any_alg_but_eddsa(svc, agent, client, rita, alg):
    receipt = approved(svc, agent, rita)["decision"]["receipt"]
    header, _, _ = _parts(receipt)
    with pytest.raises(InvalidReceipt, match="alg"):
        verify_receipt(_reencoded(receipt, header={**header, "alg": alg}), _jwks(client))


def test_it_fails_once_expired_allowing_the_leeway(svc, agent, client, rita):
    receipt = approved(svc, agent, rita)["decision"]["receipt"]
    jwks = _jwks(client)
    _, claims, _ = _parts(receipt)
    assert verify_receipt(receipt, jwks, now=claims["exp"] + 59)["sub"] == claims["sub"]
    with pytest.raises(InvalidReceipt, match="expired"):
        verify_receipt(receipt, jwks, now=claims["exp"] + 61)
    with pytest.raises(InvalidReceipt, match="expired"):
        verify_receipt(receipt, jwks, now=claims["exp"] + 1, leeway=0)
    with pytest.raises(InvalidReceipt, match="future"):
        verify_receipt(receipt, jwks, now=claims["iat"] - 61)


def test_it_fails_for_another_issuer_or_another_action(svc, agent, client, rita):
    receipt = approved(svc, agent, rita)["decision"]["receipt"]
    jwks = _jwks(client)
    assert verify_receipt(receipt, jwks, issuer=ISSUER + "/")["iss"] == ISSUER
    with pytest.raises(InvalidReceipt, match="issued by"):
        verify_receipt(receipt, jwks, issuer="https://countersign.example.com")
    with pytest.raises(InvalidReceipt, match="another action"):
        verify_receipt(receipt, jwks, action_digest="sha256:" + "1" * 64)


def test_the_issuer_is_the_public_url_setting(make_app, make_agent):
    app = make_app(public_url="https://countersign.example.com/")
    svc = app.extensions["countersign"]
    registered = make_agent()
    agent = AgentClient(app.test_client(), registered.slug, registered.secret)
    receipt = approved(svc, agent, reviewer(svc, "rita"))["decision"]["receipt"]
    claims = verify_receipt(
        receipt, _jwks(app.test_client()), issuer="https://countersign.example.com"
    )
    assert claims["iss"] == "https://countersign.example.com"


@pytest.mark.parametrize("url", ["ftp://example.com", "countersign.example.com", "https://"])
def test_a_public_url_that_is_not_http_stops_the_app(make_app, url):
    with pytest.raises(SettingsError, match="COUNTERSIGN_PUBLIC_URL"):
        make_app(public_url=url)


@pytest.mark.parametrize(
    "receipt, jwks, now",
    [
        (None, {"keys": []}, None),
        (b"a.b.c", {"keys": []}, None),
        ("", {"keys": []}, None),
        ("a.b", {"keys": []}, None),
        ("a.b.c.d", {"keys": []}, None),
        ("é.é.é", {"keys": []}, None),
        ("a.b.c", {"keys": []}, None),
        ("e30.e30.e30", {"keys": []}, None),
        ("W10.e30.AAAA", {"keys": []}, None),
        ("x" * 100_000, {"keys": []}, None),
    ],
)
def test_it_raises_only_invalid_receipt_for_garbage(receipt, jwks, now):
    with pytest.raises(InvalidReceipt):
        verify_receipt(receipt, jwks, now=now)


@pytest.mark.parametrize(
    "jwks",
    [
        None,
        [],
        {"keys": "x"},
        {"keys": [{"kid": "KID", "kty": "RSA", "n": "x", "e": "AQAB"}]},
        {"keys": [{"kid": "KID", "kty": "OKP", "crv": "Ed25519", "x": 5}]},
        {"keys": [{"kid": "KID", "kty": "OKP", "crv": "Ed25519", "x": "AAAA"}]},
        {"keys": [{"kid": "KID", "kty": "OKP", "crv": "Ed25519", "x": "é" * 43}]},
        {"keys": [{"kid": "KID", "kty": "OKP", "crv": "Ed25519", "x": "A" * 43, "use": "enc"}]},
    ],
)
def test_a_bad_jwks_raises_only_invalid_receipt(jwks):
    private = Ed25519PrivateKey.generate()
    receipt = _signed_with(private, {"alg": "EdDSA", "kid": "KID"}, {"sub": "x"})
    with pytest.raises(InvalidReceipt):
        verify_receipt(receipt, jwks)


@pytest.mark.parametrize("now", [math.nan, math.inf, "soon", object()])
def test_a_bad_clock_raises_only_invalid_receipt(svc, agent, client, rita, now):
    receipt = approved(svc, agent, rita)["decision"]["receipt"]
    with pytest.raises(InvalidReceipt, match="seconds"):
        verify_receipt(receipt, _jwks(client), now=now)


def test_the_approvals_audit_event_carries_the_receipts_claims(svc, agent, client, rita):
    resource = approved(svc, agent, rita)
    claims = verify_receipt(resource["decision"]["receipt"], _jwks(client))
    (payload,) = _event_payloads(svc, "deferral.approved", resource["id"])
    assert payload["receipt"] == claims
    assert payload["receipt_kid"] == _parts(resource["decision"]["receipt"])[0]["kid"]
    assert payload["valid_until"] == resource["decision"]["valid_until"]


def test_both_approvers_of_a_two_person_approval_are_in_its_receipt(make_app, make_agent):
    app = make_app(two_person_level="low")
    svc = app.extensions["countersign"]
    agent = make_agent().on(app)  # the quorum is set at intake, by this app's settings
    rita, sam = reviewer(svc, "rita"), reviewer(svc, "sam")
    d_id = agent.defer(refund()).get_json()["id"]
    claim_batch(svc, rita)
    assert decide(svc, rita, d_id, "approve").status == "pending"
    claim_batch(svc, sam)
    assert decide(svc, sam, d_id, "approve").status == "approved"
    receipt = agent.get(f"/api/v1/deferrals/{d_id}").get_json()["decision"]["receipt"]
    claims = verify_receipt(receipt, _jwks(app.test_client()))
    assert claims["approvers"] == ["rita", "sam"]


def test_a_rejected_deferral_carries_no_receipt(svc, agent, rita):
    d_id = agent.defer(refund()).get_json()["id"]
    claim_batch(svc, rita)
    assert decide(svc, rita, d_id, "reject", "not this one").status == "rejected"
    resource = agent.get(f"/api/v1/deferrals/{d_id}").get_json()
    assert resource["decision"]["receipt"] is None
    with svc.db.read() as session:
        assert session.get(Deferral, d_id).receipt is None
    (payload,) = _event_payloads(svc, "deferral.rejected", d_id)
    assert "receipt" not in payload


def test_an_undecided_or_new_deferral_has_no_decision_and_no_receipt(agent):
    created = agent.defer(refund()).get_json()
    assert created["decision"] is None
    assert agent.get(f"/api/v1/deferrals/{created['id']}").get_json()["decision"] is None


def test_the_callback_of_an_approval_carries_its_receipt(svc, make_agent, client, rita):
    agent = make_agent(
        "hooked-bot", callback_url="http://127.0.0.1:9/hooks", allow_private_callbacks=True
    )
    resource = approved(svc, agent, rita)
    with svc.db.read() as session:
        (body,) = session.scalars(
            select(OutboxEvent.body).where(OutboxEvent.deferral_id == resource["id"])
        ).all()
    event = json.loads(body)
    assert event["type"] == "deferral.decided"
    receipt = event["data"]["decision"]["receipt"]
    assert receipt == resource["decision"]["receipt"]
    assert verify_receipt(receipt, _jwks(client), action_digest=resource["action_digest"])


def test_after_a_key_rotation_old_receipts_still_verify_and_new_ones_carry_the_new_kid(
    svc, agent, client, runner, rita
):
    before = approved(svc, agent, rita)["decision"]["receipt"]
    (old_key,) = _jwks(client)["keys"]

    result = runner.invoke(args=["receipts", "rotate-key"])
    assert result.exit_code == 0, result.output
    new_kid = result.output.split()[4]  # "receipts are signed with <kid> from now on"
    assert new_kid != old_key["kid"] and old_key["kid"] in result.output

    after = approved(svc, agent, rita)["decision"]["receipt"]
    jwks = _jwks(client)
    assert [k["kid"] for k in jwks["keys"]] == [new_kid, old_key["kid"]]
    assert jwks["keys"][1] == old_key
    assert _parts(before)[0]["kid"] == old_key["kid"]
    assert _parts(after)[0]["kid"] == new_kid
    assert verify_receipt(before, jwks)["approvers"] == ["rita"]
    assert verify_receipt(after, jwks)["approvers"] == ["rita"]
    # The new key alone does not verify the old receipt, nor the old key the new one.
    with pytest.raises(InvalidReceipt, match="no key"):
        verify_receipt(before, {"keys": [jwks["keys"][0]]})
    with pytest.raises(InvalidReceipt, match="no key"):
        verify_receipt(after, {"keys": [old_key]})


def test_a_retired_key_leaves_the_jwks_once_its_receipts_have_expired(svc):
    settings = svc.settings
    first = receipts.rotate_key(settings, now=1_000_000.0)
    second = receipts.rotate_key(settings, now=1_000_010.0)
    assert first.new.kid == second.old.kid
    listed = lambda now: [k["kid"] for k in receipts.jwks(settings, now)["keys"]]  # noqa: E731
    assert listed(1_000_010.0) == [second.new.kid, first.old.kid, second.old.kid]
    ttl = settings.approval_ttl + receipts.RETIRED_MARGIN
    assert first.old_listed_until == 1_000_000 + ttl
    assert listed(1_000_000.0 + ttl - 1) == [second.new.kid, first.old.kid, second.old.kid]
    assert listed(1_000_000.0 + ttl) == [second.new.kid, second.old.kid]
    assert listed(1_000_010.0 + ttl) == [second.new.kid]
    # A later rotation drops what has expired from the file too.
    third = receipts.rotate_key(settings, now=1_000_010.0 + ttl)
    kept = [e["kid"] for e in receipts.retired_keys(settings.receipt_key_file)]
    assert kept == [third.old.kid]
