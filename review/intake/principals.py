"""Who the principal is: claimed by the agent, or verified with their identity provider's token.

An agent names its principal in `on_behalf_of.id`, text it chose. It may also forward
`on_behalf_of.token`, a JWT the human's identity provider issued (PROTOCOL.md section
17). The token is verified here with PyJWT against the keys of the issuers the operator
trusts (review/intake/principal_keys.py): its signature, `iss`, `aud`, `exp` and `nbf`
(60 s of leeway for clocks), and its `email` or `sub` must be the claimed id. What comes
out is a `Principal`: verified or not, its issuer, subject and groups (from the claim
named by COUNTERSIGN_PRINCIPAL_GROUPS_CLAIM). A token that does not verify is refused
(422 `invalid_principal_token`, at `/on_behalf_of/token`); keys that cannot be fetched
answer 503 (principal_keys.KeysUnavailable), since the token may well be good.

The token is a bearer credential: it is taken out of the request here
(`without_token`), before the body is hashed for idempotency, stored, audited or
logged, and it is never put in an error message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jwt

from review.errors import InvalidPrincipalToken
from review.intake.principal_keys import PrincipalKeys, UnknownKey

LEEWAY_SECONDS = 60
# Asymmetric algorithms only: an HMAC "key" would be the issuer's public key, usable by anyone.
ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
MAX_GROUPS = 100
MAX_GROUP_LENGTH = 200
TOKEN_PATH = "/on_behalf_of/token"  # noqa: S105  (a JSON Pointer, not a secret)


@dataclass(frozen=True)
class Principal:
    """The human on whose behalf the agent acts, as far as the service knows them."""

    id: str
    display_name: str | None = None
    verified: bool = False
    issuer: str | None = None
    subject: str | None = None  # the token's `sub`
    email: str | None = None  # the token's `email`, when the issuer vouches for it
    groups: tuple[str, ...] = ()

    @property
    def identity(self) -> str:
        """What separation of duties compares: the verified e-mail when there is one (how
        reviewers are known), else the verified subject, else the claimed id."""
        if self.verified:
            return self.email or self.subject or self.id
        return self.id

    def as_audit(self) -> dict[str, Any]:
        """The principal as the `received` event keeps it (never the token)."""
        shown: dict[str, Any] = {"id": self.id}
        if self.display_name is not None:
            shown["display_name"] = self.display_name
        shown["verified"] = self.verified
        if self.verified:
            shown.update(issuer=self.issuer, subject=self.subject, groups=list(self.groups))
        return shown


def verified_values(principal: Principal) -> dict[str, Any] | None:
    """`deferrals.principal_verified`: what the issuer vouched for; None when only claimed."""
    if not principal.verified:
        return None
    return {
        "issuer": principal.issuer,
        "subject": principal.subject,
        "email": principal.email,
        "groups": list(principal.groups),
    }


def principal_of(row: Any) -> Principal:
    """The Principal a stored deferral (or its values) names."""
    proof = getattr(row, "principal_verified", None)
    if not proof:
        return Principal(row.principal_id, row.principal_name)
    return Principal(
        row.principal_id,
        row.principal_name,
        verified=True,
        issuer=proof.get("issuer"),
        subject=proof.get("subject"),
        email=proof.get("email"),
        groups=tuple(proof.get("groups") or ()),
    )


def without_token(body: dict[str, Any]) -> dict[str, Any]:
    """The request with `on_behalf_of.token` taken out (a shallow copy; the rest shared)."""
    on_behalf_of = body.get("on_behalf_of")
    if not isinstance(on_behalf_of, dict) or "token" not in on_behalf_of:
        return body
    return {**body, "on_behalf_of": {k: v for k, v in on_behalf_of.items() if k != "token"}}


def read_principal(
    keys: PrincipalKeys, on_behalf_of: dict[str, Any], *, audience: str, groups_claim: str
) -> Principal:
    """The principal the request names, verified when it carries a token."""
    claimed = Principal(on_behalf_of["id"], on_behalf_of.get("display_name"))
    token = on_behalf_of.get("token")
    if token is None:
        return claimed
    claims = _verified_claims(keys, token, audience)
    # An e-mail counts only when the issuer says it verified it (as for SSO logins): an
    # issuer that lets users type any address would otherwise vouch for anyone's.
    email = claims.get("email") if claims.get("email_verified") is True else None
    subject = claims.get("sub")
    if claimed.id not in {c for c in (email, subject) if isinstance(c, str)}:
        raise _refused("the token's email and sub are not on_behalf_of.id")
    return Principal(
        claimed.id,
        claimed.display_name,
        verified=True,
        issuer=claims["iss"],
        subject=subject if isinstance(subject, str) else None,
        email=email if isinstance(email, str) else None,
        groups=_groups(claims.get(groups_claim)),
    )


def _verified_claims(keys: PrincipalKeys, token: str, audience: str) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise _refused("the token is not a JWT") from None
    alg, issuer = header.get("alg"), unverified.get("iss")
    if alg not in ALGORITHMS:
        raise _refused(f"the token's algorithm must be one of {', '.join(sorted(ALGORITHMS))}")
    if not isinstance(issuer, str) or not keys.trusts(issuer):
        raise _refused("the token's issuer is not trusted here")
    kid = header.get("kid")
    try:
        key = keys.key_for(issuer, kid if isinstance(kid, str) else None, alg)
    except UnknownKey as exc:
        raise _refused(f"the token is not signed by a key of its issuer ({exc})") from None
    try:
        return jwt.decode(
            token,
            key,
            algorithms=[alg],
            audience=audience,
            issuer=issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise _refused("the token has expired") from None
    except jwt.ImmatureSignatureError:
        raise _refused("the token is not valid yet (nbf)") from None
    except jwt.InvalidAudienceError:
        raise _refused("the token is not issued for this service (aud)") from None
    except jwt.InvalidSignatureError:
        raise _refused("the token's signature does not verify") from None
    except jwt.PyJWTError as exc:
        raise _refused(f"the token does not verify: {type(exc).__name__}") from None


def _groups(value: Any) -> tuple[str, ...]:
    """The groups claim as a list of names: a string is one group; other values are left out."""
    items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    names = [g for g in items if isinstance(g, str) and 0 < len(g) <= MAX_GROUP_LENGTH]
    return tuple(dict.fromkeys(names))[:MAX_GROUPS]


def _refused(why: str) -> InvalidPrincipalToken:
    return InvalidPrincipalToken(
        f"on_behalf_of.token refused: {why}",
        details=[{"path": TOKEN_PATH, "message": why}],
    )
