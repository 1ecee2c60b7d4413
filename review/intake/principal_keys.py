"""The signing keys of the identity providers the operator trusts, fetched and cached.

Each trusted issuer's keys come from OIDC discovery (`<issuer>/.well-known/openid-
configuration` names `jwks_uri`) or, with one issuer, from COUNTERSIGN_PRINCIPAL_JWKS_URL.
They are kept in memory for CACHE_SECONDS. A token signed with a key the cache does not
know (the issuer rotated its keys) fetches them again at once, but at most once per
MIN_REFETCH_SECONDS per issuer, so tokens with made-up `kid`s cannot make us hammer the
issuer. A failed fetch is remembered for as long, so intake does not wait on a dead
issuer again and again.

Fetches go through review/callbacks/outbound.py: one deadline for the whole request
(FETCH_DEADLINE, discovery and keys together), no redirects, a bounded answer. The
operator chose the issuer and JWKS URLs, so they may be on a private network; a
`jwks_uri` that discovery hands us must be https (http only on loopback) and, unless it
is on the issuer's own host or COUNTERSIGN_ALLOW_PRIVATE_CALLBACKS=1, resolve to public
addresses only: a discovery document cannot aim the service at its own network.
One fetch per issuer at a time; other requests wait for it, never past the deadline.
When keys cannot be had, `KeysUnavailable` (503, retry later): the token may be fine.
When an issuer's keys were fetched before, a failed refresh keeps using them.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from jwt import PyJWK
from jwt.exceptions import PyJWKError

from review.callbacks import outbound
from review.errors import DomainError
from review.settings import Settings, is_https_or_loopback

log = logging.getLogger(__name__)

CACHE_SECONDS = 300.0
MIN_REFETCH_SECONDS = 10.0  # per issuer, for unknown kids and after a failure
FETCH_DEADLINE = 3.0  # seconds for discovery and keys together
RETRY_AFTER = 30
DISCOVERY_PATH = "/.well-known/openid-configuration"


class KeysUnavailable(DomainError):
    """The issuer's keys could not be fetched: the token cannot be judged now (503)."""

    code = "principal_keys_unavailable"
    retry_after = RETRY_AFTER


class UnknownKey(Exception):
    """The issuer has no key that fits the token (its `kid`, or none at all)."""


@dataclass
class _Issuer:
    url: str
    jwks_uri: str | None  # from settings, or learnt by discovery
    configured: bool  # jwks_uri is the operator's (COUNTERSIGN_PRINCIPAL_JWKS_URL)
    keys: dict[str | None, dict[str, Any]] = field(default_factory=dict)  # kid -> JWK
    fetched_at: float | None = None  # monotonic; None: never fetched
    failed_at: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    parsed: dict[tuple[str | None, str], PyJWK] = field(default_factory=dict)


class PrincipalKeys:
    """The trusted issuers' public keys, fetched on demand and cached."""

    def __init__(self, settings: Settings):
        self.allow_private = settings.allow_private_callbacks
        self._issuers = {
            url: _Issuer(
                url, settings.principal_jwks_url or None, bool(settings.principal_jwks_url)
            )
            for url in settings.principal_issuers
        }

    def trusts(self, issuer: str) -> bool:
        return issuer in self._issuers

    def key_for(self, issuer: str, kid: str | None, alg: str) -> PyJWK:
        """The issuer's key named `kid` for `alg`; UnknownKey or KeysUnavailable otherwise."""
        entry = self._issuers[issuer]
        now = time.monotonic()
        jwk = self._lookup(entry, kid)
        if jwk is None or self._stale(entry, now):
            if self._may_fetch(entry, now, unknown=jwk is None):
                self._refresh(entry, now)
            jwk = self._lookup(entry, kid)
        if jwk is None:
            if entry.fetched_at is None:
                raise KeysUnavailable(f"the keys of {issuer} could not be fetched; try again later")
            raise UnknownKey(f"{issuer} has no signing key {kid!r}" if kid else "no kid")
        return self._parsed(entry, jwk, alg)

    @staticmethod
    def _lookup(entry: _Issuer, kid: str | None) -> dict[str, Any] | None:
        if kid is not None:
            return entry.keys.get(kid)
        # No kid: only unambiguous when the issuer publishes a single signing key.
        return next(iter(entry.keys.values())) if len(entry.keys) == 1 else None

    @staticmethod
    def _stale(entry: _Issuer, now: float) -> bool:
        return entry.fetched_at is None or now - entry.fetched_at > CACHE_SECONDS

    @staticmethod
    def _may_fetch(entry: _Issuer, now: float, *, unknown: bool) -> bool:
        last = max(entry.fetched_at or -1e18, entry.failed_at or -1e18)
        if entry.failed_at is not None and now - entry.failed_at < MIN_REFETCH_SECONDS:
            return False
        if unknown and entry.fetched_at is not None and not PrincipalKeys._stale(entry, now):
            return now - last >= MIN_REFETCH_SECONDS
        return True

    def _refresh(self, entry: _Issuer, started: float) -> None:
        if not entry.lock.acquire(timeout=FETCH_DEADLINE):
            return  # another request is fetching and it is taking too long: judge with what we have
        try:
            if (entry.fetched_at or -1e18) >= started or (entry.failed_at or -1e18) >= started:
                return  # someone fetched while we waited
            try:
                entry.keys = self._fetch(entry)
                entry.fetched_at, entry.failed_at = time.monotonic(), None
                entry.parsed.clear()
            except _FetchFailed as exc:
                entry.failed_at = time.monotonic()
                log.warning("keys of principal issuer %s not fetched: %s", entry.url, exc)
        finally:
            entry.lock.release()

    def _fetch(self, entry: _Issuer) -> dict[str | None, dict[str, Any]]:
        deadline = time.monotonic() + FETCH_DEADLINE
        if entry.jwks_uri is None:
            url = entry.url.rstrip("/") + DISCOVERY_PATH
            meta = _get_json(url, allow_private=True, deadline=deadline)
            if meta.get("issuer") != entry.url:
                raise _FetchFailed(f"discovery at {url} names issuer {meta.get('issuer')!r}")
            jwks_uri = meta.get("jwks_uri")
            if not isinstance(jwks_uri, str) or not is_https_or_loopback(jwks_uri):
                raise _FetchFailed(f"discovery at {url} has no https jwks_uri")
            entry.jwks_uri = jwks_uri
        same_host = urlsplit(entry.jwks_uri).hostname == urlsplit(entry.url).hostname
        jwks = _get_json(
            entry.jwks_uri,
            allow_private=self.allow_private or same_host or entry.configured,
            deadline=deadline,
        )
        keys: dict[str | None, dict[str, Any]] = {}
        for jwk in jwks.get("keys", []) if isinstance(jwks.get("keys"), list) else []:
            if isinstance(jwk, dict) and jwk.get("use", "sig") == "sig" and "d" not in jwk:
                keys[jwk.get("kid")] = jwk
        if not keys:
            raise _FetchFailed(f"{entry.jwks_uri} lists no signing keys")
        return keys

    @staticmethod
    def _parsed(entry: _Issuer, jwk: dict[str, Any], alg: str) -> PyJWK:
        if jwk.get("alg") not in (None, alg):
            raise UnknownKey(f"the key is for {jwk.get('alg')}, the token says {alg}")
        cached = entry.parsed.get((jwk.get("kid"), alg))
        if cached is None:
            try:
                cached = PyJWK(jwk, algorithm=alg)
            except (PyJWKError, ValueError, TypeError) as exc:
                raise UnknownKey(f"the issuer's key does not fit {alg}: {exc}") from None
            entry.parsed[(jwk.get("kid"), alg)] = cached
        return cached


class _FetchFailed(Exception):
    pass


def _get_json(url: str, *, allow_private: bool, deadline: float) -> dict[str, Any]:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _FetchFailed("deadline exceeded")
    answer = outbound.get(
        url, {"Accept": "application/json"}, allow_private=allow_private, deadline=left
    )
    if answer.error:
        raise _FetchFailed(f"{url}: {answer.error}")
    if answer.code != 200:
        raise _FetchFailed(f"{url} answered {answer.code}")
    if len(answer.body) >= outbound.ANSWER_CAP:
        raise _FetchFailed(f"{url} answered more than {outbound.ANSWER_CAP} bytes")
    try:
        data = json.loads(answer.body)
    except ValueError:
        raise _FetchFailed(f"{url} did not answer JSON") from None
    if not isinstance(data, dict):
        raise _FetchFailed(f"{url} did not answer a JSON object")
    return data
