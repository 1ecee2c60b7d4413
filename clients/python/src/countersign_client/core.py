"""What the sync and the async client share: settings, signing a call, building requests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from countersign_client import wire
from countersign_client.canonical import action_digest
from countersign_client.errors import ExecutionNotReported
from countersign_client.resources import Approval
from countersign_client.retrying import RetryPolicy
from countersign_client.signing import BadSignature, secret_key, signed_headers

VERSION = "0.1.0"
USER_AGENT = f"countersign-client/{VERSION}"
CONNECT_TIMEOUT = 10.0


class ClientBase:
    """Settings of a client for one agent, and the pure parts of each request."""

    def __init__(
        self,
        base_url: str,
        agent: str,
        secret: str,
        *,
        on_behalf_of: str | dict[str, Any] | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        jwks: Mapping[str, Any] | None = None,
    ):
        try:
            secret_key(secret)
        except BadSignature as exc:
            raise ValueError(f"secret: {exc} (expected whsec_<base64>)") from None
        self.base_url = base_url.rstrip("/")
        self.agent = agent
        self._secret = secret
        # The principal when a call names none: the agent itself, as an unattended run.
        self.on_behalf_of = on_behalf_of if on_behalf_of is not None else f"system:{agent}"
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        # The service's public keys (GET /.well-known/jwks.json, kept by the agent's
        # operator): when set, a gate runs only on an approval whose receipt verifies.
        self.jwks = jwks

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.agent} at {self.base_url}>"

    def _request_options(self, call: wire.Call) -> dict[str, Any]:
        """Arguments for httpx's `request` for one try of `call` (signed now)."""
        headers = signed_headers(self._secret, call.msg_id, call.body)
        headers["user-agent"] = USER_AGENT
        if call.body:
            headers["content-type"] = "application/json"
        timeout = httpx.Timeout(
            self.timeout,
            connect=min(self.timeout, CONNECT_TIMEOUT),
            read=call.read_timeout if call.read_timeout else self.timeout,
        )
        return {
            "method": call.method,
            "url": self.base_url + call.path,
            "content": call.body or None,
            "params": call.params,
            "headers": headers,
            "timeout": timeout,
        }

    def _defer_call(
        self,
        *,
        tool: str,
        args: dict[str, Any],
        summary: str,
        on_behalf_of: str | dict[str, Any] | None,
        idempotency_key: str | None,
        **optional: Any,
    ) -> wire.Call:
        request = wire.deferral_request(
            tool=tool,
            args=args,
            summary=summary,
            on_behalf_of=wire.principal(
                on_behalf_of if on_behalf_of is not None else self.on_behalf_of, self.agent
            ),
            **optional,
        )
        return wire.defer_call(self.agent, request, idempotency_key)

    @staticmethod
    def _requested(tool: str, args: Any) -> str:
        """The digest of the action about to be deferred (TypeError/ValueError if not JSON)."""
        if not isinstance(args, dict):
            raise TypeError("args is a dict of the tool's arguments")
        return action_digest(tool, args)

    @staticmethod
    def _not_reported(approval: Approval, outcome: str, result: Any, error: Exception):
        tool = approval.action.get("tool")
        return ExecutionNotReported(
            f"{tool} ({approval.id}) ran and {outcome}, but the report did not reach "
            f"Countersign: {error}",
            approval,
            outcome,
            result,
        )
