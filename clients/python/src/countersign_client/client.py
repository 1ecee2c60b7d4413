"""The client, synchronous: `Countersign(base_url, agent=..., secret=...)`."""

from __future__ import annotations

import functools
import inspect
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx

from countersign_client import wire
from countersign_client.approval import (
    CallShape,
    failure_text,
    option_value,
    reportable,
    runnable,
)
from countersign_client.core import ClientBase
from countersign_client.errors import (
    ApprovalTimeout,
    Conflict,
    CountersignError,
    TransportError,
)
from countersign_client.resources import AgentStatus, Approval, Deferral
from countersign_client.retrying import NO_ANSWER, RetryPolicy, retry_after, worth_retrying

F = TypeVar("F", bound=Callable[..., Any])


class Countersign(ClientBase):
    """Defer actions to Countersign as one agent, wait for decisions, report executions.

    `http_client` lets the caller bring an `httpx.Client` (proxies, TLS settings); it is
    then theirs to close. See RetryPolicy for what is retried and how long it waits.
    """

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
        http_client: httpx.Client | None = None,
    ):
        super().__init__(
            base_url,
            agent,
            secret,
            on_behalf_of=on_behalf_of,
            timeout=timeout,
            retry=retry,
            jwks=jwks,
        )
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client()

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Countersign:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- the API (PROTOCOL.md section 4) ---------------------------------------------

    def defer(
        self,
        *,
        tool: str,
        args: dict[str, Any],
        summary: str,
        on_behalf_of: str | dict[str, Any] | None = None,
        before: Any = None,
        after: Any = None,
        rationale: str | None = None,
        intent: str | None = None,
        resource: dict[str, str] | None = None,
        trace_url: str | None = None,
        labels: dict[str, str] | None = None,
        expires_in: int | None = None,
        idempotency_key: str | None = None,
        trace_id: str | None = None,
        risk: dict[str, Any] | None = None,
    ) -> Deferral:
        """Defer an action for review. A retry (ours, or yours with the same
        `idempotency_key`) answers the same deferral; None leaves a field out."""
        call = self._defer_call(
            tool=tool, args=args, summary=summary, on_behalf_of=on_behalf_of,
            idempotency_key=idempotency_key, before=before, after=after, rationale=rationale,
            intent=intent, resource=resource, trace_url=trace_url, trace_id=trace_id, labels=labels,
            expires_in=expires_in, risk=risk,
        )  # fmt: skip
        return wire.deferral_from(self._send(call))

    def get(self, deferral_id: str) -> Deferral:
        """The deferral as it is now."""
        return wire.deferral_from(self._send(wire.read_call(deferral_id)))

    def wait(self, deferral_id: str, timeout: float = 3600.0) -> Deferral:
        """The deferral once it has ended, or as last read when `timeout` seconds ran out.

        Long-polls (`?wait=` up to 60 s at a time). When the service does not answer
        (down, restarting, refusing or resetting connections) or answers 429/5xx, it
        waits as RetryPolicy.poll_pause says and polls again, until the timeout; then it
        returns the deferral as last read (still pending or in_review: check
        `.terminal`; the service waits whole seconds, so this is up to a second late),
        or raises TransportError (or the error answer) when the service never answered
        during the whole call. 401, 404 and other refusals raise at once.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        seen: Deferral | None = None
        failures = 0
        while True:
            left = max(0.0, deadline - time.monotonic())
            call = wire.read_call(deferral_id, wait=math.ceil(left))  # whole seconds
            try:
                response = self._http.request(**self._request_options(call))
            except NO_ANSWER as exc:
                error: CountersignError = TransportError(f"no answer from {self.base_url}: {exc}")
                error.__cause__ = exc
                hint = None
            else:
                if not worth_retrying(response):
                    seen = wire.deferral_from(response)
                    failures = 0
                    if seen.terminal or time.monotonic() >= deadline:
                        return seen
                    continue
                error, hint = wire.error_of(response), retry_after(response)
            failures += 1
            left = deadline - time.monotonic()
            if left <= 0:
                if seen is not None:
                    return seen
                raise error
            time.sleep(min(self.retry.poll_pause(failures, hint), left))

    def cancel(self, deferral_id: str, reason: str) -> Deferral:
        """Withdraw a deferral that is still undecided (Conflict when it has ended)."""
        return wire.deferral_from(self._send(wire.cancel_call(deferral_id, reason)))

    def report_execution(
        self,
        deferral: Deferral,
        outcome: str = "succeeded",
        result: Any = None,
        *,
        idempotency_key: str | None = None,
    ) -> Deferral:
        """Report what running the approved action did, against its `action_digest`.

        Recorded once: a retry of this call (same webhook-id) answers the recorded report;
        any other report of the same deferral is refused (Conflict)."""
        call = wire.execution_call(deferral, outcome, result, idempotency_key)
        return wire.deferral_from(self._send(call))

    def status(self) -> AgentStatus:
        """This agent's kill switch (`.killed`, `.reason`, `.changed_by`)."""
        return wire.status_from(self._send(wire.status_call(self.agent)))

    # --- running approved actions ------------------------------------------------------

    @contextmanager
    def gate(
        self,
        *,
        tool: str,
        args: dict[str, Any],
        summary: str,
        on_behalf_of: str | dict[str, Any] | None = None,
        timeout: float = 3600.0,
        cancel_on_timeout: bool = True,
        **defer_kwargs: Any,
    ) -> Iterator[Approval]:
        """Defer, wait, and run the block only with a valid approval of this very action.

        Before the block: raises Rejected, Expired, Cancelled or Killed (how it ended, with
        the decision's reason), ApprovalTimeout (still undecided after `timeout` s; it is
        then withdrawn unless `cancel_on_timeout=False`), ActionMismatch, ApprovalLapsed
        or AlreadyExecuted. The block gets the Approval: run `approved.args` (a reviewer
        may have edited them) and set `approved.result` to report it. After the block:
        reports `succeeded` with that result, or `failed` with the exception's text (and
        the exception goes on); ExecutionNotReported if a success could not be reported.
        """
        approval = self._approval(
            tool, args, summary, on_behalf_of, timeout, cancel_on_timeout, defer_kwargs
        )
        try:
            yield approval
        except Exception as exc:
            self._report_failure(approval, exc)
            raise
        self._report_success(approval, approval.result)

    def requires_approval(
        self,
        *,
        tool: str,
        summary: str,
        on_behalf_of: Any = None,
        timeout: float = 3600.0,
        cancel_on_timeout: bool = True,
        exclude: Iterable[str] = (),
        **defer_kwargs: Any,
    ) -> Callable[[F], F]:
        """Decorate a function so that each call is deferred and runs once approved.

        The call's arguments (bound by the signature, defaults filled in) are the action's
        args; `summary` is formatted from them ("Refund {amount} on {invoice}"). Any
        option may instead be a callable taking those args (a dict). The function is
        called with the approved args; its return value is reported (when it is JSON)
        and returned. Raises as `gate` does. Parameters in `exclude` (and a first `self`
        or `cls`) are not part of the action and are passed through unchanged.
        """

        def decorate(fn: F) -> F:
            if inspect.iscoroutinefunction(fn):
                raise TypeError(f"{fn.__qualname__} is async: use AsyncCountersign")
            shape = CallShape(fn, summary, exclude)

            @functools.wraps(fn)
            def guarded(*positional: Any, **keywords: Any) -> Any:
                args, kept = shape.bind(positional, keywords)
                options = {k: option_value(v, args) for k, v in defer_kwargs.items()}
                approval = self._approval(
                    tool, args, shape.summary_of(args), option_value(on_behalf_of, args),
                    timeout, cancel_on_timeout, options,
                )  # fmt: skip
                call_positional, call_keywords = shape.arguments(approval, kept)
                try:
                    result = fn(*call_positional, **call_keywords)
                except Exception as exc:
                    self._report_failure(approval, exc)
                    raise
                self._report_success(approval, result)
                return result

            return guarded  # type: ignore[return-value]

        return decorate

    # --- inside ---------------------------------------------------------------------------

    def _approval(
        self,
        tool: str,
        args: dict[str, Any],
        summary: str,
        on_behalf_of: Any,
        timeout: float,
        cancel_on_timeout: bool,
        defer_kwargs: dict[str, Any],
    ) -> Approval:
        requested = self._requested(tool, args)
        deferral = self.defer(
            tool=tool, args=args, summary=summary, on_behalf_of=on_behalf_of, **defer_kwargs
        )
        if not deferral.terminal:
            deferral = self.wait(deferral.id, timeout)
        if not deferral.terminal:
            deferral = self._give_up(deferral, timeout, cancel_on_timeout)
        return runnable(deferral, tool, requested, jwks=self.jwks)

    def _give_up(self, deferral: Deferral, timeout: float, cancel: bool) -> Deferral:
        """Withdraw an undecided deferral and raise ApprovalTimeout; a decision that came
        in the meantime stands and is returned."""
        if cancel:
            try:
                deferral = self.cancel(deferral.id, wire.timeout_reason(timeout))
            except Conflict:
                deferral = self.get(deferral.id)
                if deferral.terminal:
                    return deferral
            except CountersignError:
                pass  # out of reach: it stays undecided until it expires
        raise ApprovalTimeout(
            f"{deferral.action.get('tool')} ({deferral.id}) was not decided within "
            f"{timeout:g} s (now {deferral.status})",
            deferral,
        )

    def _report_success(self, approval: Approval, result: Any) -> None:
        try:
            self.report_execution(approval, "succeeded", reportable(result))
        except CountersignError as exc:
            raise self._not_reported(approval, "succeeded", result, exc) from exc

    def _report_failure(self, approval: Approval, error: Exception) -> None:
        try:
            self.report_execution(approval, "failed", failure_text(error))
        except CountersignError as exc:
            error.add_note(f"countersign: this failure was not reported ({exc})")

    def _send(self, call: wire.Call) -> httpx.Response:
        """The answer to `call`, retried as self.retry says (same webhook-id every time)."""
        retry = 0
        while True:
            try:
                response = self._http.request(**self._request_options(call))
            except NO_ANSWER as exc:
                failure: Any = exc
                hint = None
            else:
                if not worth_retrying(response):
                    return response
                failure, hint = response, retry_after(response)
            retry += 1
            pause = self.retry.pause(retry, hint)
            if pause is None:
                if isinstance(failure, httpx.Response):
                    return failure
                raise TransportError(
                    f"no answer from {self.base_url} after {retry} tries: {failure}"
                ) from failure
            time.sleep(pause)
