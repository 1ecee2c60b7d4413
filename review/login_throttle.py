"""Login throttling that slows guessers without locking out the account's owner.

Failed logins are counted in Redis over a 15-minute window, three ways:

- per address (any account): past `login_failures_per_address` the address is refused
  (429) until the window ends;
- per account *and* address: past `login_failures_per_account` that address is refused
  for that account until the window ends;
- per account (every address together): once it reaches `login_failures_per_account`,
  the account is under attack, and each address that fails on it must wait before its
  next try there: 1 second, doubling with each further failure of the account, at most
  `MAX_WAIT`.

No count ever refuses an address that has not failed itself: the owner's correct
password from their own address gets in however many guesses others made, and
failures from behind a proxy are told apart only when `COUNTERSIGN_TRUSTED_PROXIES`
lets the app see the client's address. A name that cannot be a username is counted
for the address alone. Redis down: nothing is counted or refused (the password check
still protects).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

from review import redis_keys
from review.services import Services
from review.users import USERNAME

log = logging.getLogger(__name__)
WINDOW = 15 * 60
MAX_WAIT = 5 * 60
LONGEST_ADDRESS = 100  # what an untrusted header could make longer is cut


@dataclass(frozen=True)
class Refusal:
    """Why this address may not try now, and for how many seconds."""

    reason: str  # "address", "account_from_address" or "wait"
    retry_after: int

    @property
    def message(self) -> str:
        return f"Too many failed logins. Wait {_spoken(self.retry_after)} and try again."


def normal_address(address: str | None) -> str:
    return (address or "unknown")[:LONGEST_ADDRESS]


def refusal(svc: Services, username: str, address: str) -> Refusal | None:
    """Whether this address is held back from trying this account now."""
    limits = svc.settings
    by_address = redis_keys.login_failures_from_address(address)
    checks = [("address", by_address, limits.login_failures_per_address)]
    if USERNAME.match(username):
        pair = redis_keys.login_failures_for_account_from_address(username, address)
        checks.append(("account_from_address", pair, limits.login_failures_per_account))
    try:
        pipe = svc.redis.client().pipeline(transaction=False)
        for _reason, key, _limit in checks:
            pipe.get(key)
            pipe.pttl(key)
        pipe.pttl(redis_keys.login_wait(username, address))
        answers = pipe.execute()
    except redis.RedisError as exc:
        log.warning("login throttle unavailable: %s", exc)
        return None
    for i, (reason, _key, limit) in enumerate(checks):
        count, left_ms = answers[2 * i], answers[2 * i + 1]
        if int(count or 0) >= limit:
            return Refusal(reason, _seconds(left_ms, WINDOW))
    wait_ms = answers[-1]
    if wait_ms is not None and wait_ms > 0:
        return Refusal("wait", _seconds(wait_ms, 1))
    return None


def count_failure(svc: Services, username: str, address: str) -> None:
    """One failed login: count it, and make this address wait if the account is under attack."""
    keys = [redis_keys.login_failures_from_address(address)]
    if USERNAME.match(username):
        keys += [
            redis_keys.login_failures_for_account_from_address(username, address),
            redis_keys.login_failures_for_account(username),
        ]
    try:
        client = svc.redis.client()
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.incr(key)
            pipe.expire(key, WINDOW, nx=True)
        counts = pipe.execute()[::2]
        if len(keys) == 3:
            past_limit = counts[2] - svc.settings.login_failures_per_account
            if past_limit >= 0:
                wait = min(2 ** min(past_limit, 20), MAX_WAIT)
                client.set(redis_keys.login_wait(username, address), "1", ex=wait)
    except redis.RedisError as exc:
        log.warning("login failure not counted: %s", exc)


def first_refusal_in_window(svc: Services, username: str, address: str) -> bool:
    """True once per window for an (account, address): a flood of refusals is audited once."""
    key = redis_keys.login_throttle_noted(username, address)
    try:
        return bool(svc.redis.client().set(key, "1", nx=True, ex=WINDOW))
    except redis.RedisError:
        return True


def forget_failures(svc: Services, username: str, address: str) -> None:
    """A successful login: this address's failures on this account no longer count."""
    try:
        svc.redis.client().delete(
            redis_keys.login_failures_for_account_from_address(username, address),
            redis_keys.login_wait(username, address),
        )
    except redis.RedisError as exc:
        log.warning("login failures not forgotten: %s", exc)


def _seconds(left_ms: int | None, default: int) -> int:
    """Whole seconds left, rounded up, from PTTL (-1: no expiry, -2: no key). Redis's TTL
    rounds to the nearest second, so a 1 s wait read as 0 once half of it had gone: the
    address was let through early, and a count about to end said "wait 15 minutes"."""
    return -(-left_ms // 1000) if left_ms is not None and left_ms > 0 else default


def _spoken(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    return f"{(seconds + 59) // 60} minutes"
