"""What a running Countersign holds: settings, database, Redis, the secret box, the policy.

One Services per app, kept in `app.extensions["countersign"]`. Domain code receives the
parts it needs as arguments; views and jobs fetch them with `current_services()`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import redis
from flask import current_app
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from review.agents.registry import SecretCache
from review.agents.status_cache import StatusCache
from review.audit.redaction import Redactor
from review.callbacks.long_poll import Waiters
from review.callbacks.wakeups import after_commit
from review.db import Database
from review.embedded_redis import EmbeddedRedis
from review.intake.policy import Policy
from review.intake.policy_loading import policy_from_settings
from review.intake.principal_keys import PrincipalKeys
from review.notifications.wakeups import after_commit as notify_after_commit
from review.observability import metrics
from review.reviewing import live
from review.sealing import SecretBox
from review.settings import Settings


class RedisProvider:
    """The Redis client, connected on first use (starting the embedded server if needed)."""

    def __init__(self, url: str, embedded: EmbeddedRedis | None):
        self._url = url
        self.embedded = embedded
        self._client: redis.Redis | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        if self.embedded is not None:
            return self.embedded.acquire()
        return self._url

    def describe(self) -> str:
        """Where Redis is, for people: never the password."""
        if self.embedded is not None:
            return "embedded, on a unix socket in instance/"
        if self._url.startswith("unix://"):
            return f"unix socket {self._url.removeprefix('unix://').split('?')[0]}"
        return self._url.split("@")[-1]

    def client(self) -> redis.Redis:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    # One quick retry: when Redis is down, callers (health, rate limit)
                    # should learn it in milliseconds, not after redis-py's long backoff.
                    self._client = redis.Redis.from_url(
                        self.url,
                        socket_timeout=5,
                        socket_connect_timeout=2,
                        retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), 1),
                    )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.embedded is not None:
            self.embedded.release()


@dataclass
class Services:
    settings: Settings
    db: Database
    redis: RedisProvider
    box: SecretBox
    policy: Policy
    secrets: SecretCache
    statuses: StatusCache
    waiters: Waiters
    redactor: Redactor
    principal_keys: PrincipalKeys
    arrivals: live.Arrivals

    @classmethod
    def build(cls, settings: Settings) -> Services:
        embedded = None if settings.redis_url else EmbeddedRedis(settings.instance_path)
        box = SecretBox(settings.secret_key, settings.secret_key_fallbacks)
        db = Database(settings.database_url)
        provider = RedisProvider(settings.redis_url, embedded)
        # Live pages first: their one round trip also publishes the endings for the
        # long-polls (review/reviewing/live.py); the wake-ups then queue the callbacks.
        db.after_commit(lambda info: live.after_commit(provider.client, info))
        db.after_commit(lambda info: after_commit(provider.client, info))
        statuses = StatusCache(provider.client)
        db.after_commit(statuses.after_commit)  # after the Redis copy was rewritten
        db.after_commit(metrics.after_commit)  # the decisions the transaction noted
        db.after_commit(lambda info: notify_after_commit(provider.client, info))
        return cls(
            settings=settings,
            db=db,
            redis=provider,
            box=box,
            policy=policy_from_settings(settings),
            secrets=SecretCache(box, listener=statuses),  # forgets on the same channel
            statuses=statuses,
            waiters=Waiters(provider.client),
            redactor=Redactor(settings.secret_key, settings.audit_redact),
            principal_keys=PrincipalKeys(settings),
            arrivals=live.Arrivals(provider.client),
        )

    def close(self) -> None:
        self.waiters.close()
        self.statuses.close()
        self.arrivals.close()
        self.redis.close()
        self.db.dispose()


def current_services() -> Services:
    return current_app.extensions["countersign"]
