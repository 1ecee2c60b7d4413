"""What the gateway does with one `tools/call` (PROTOCOL.md section 11).

The call becomes a deferral (review/doors/mcp_gateway/bridge.py). What comes back says
what to do: `approved` (by the policy, or by a person while the call waited) forwards
the call to the upstream server; any other decision answers a tool error naming the
reason; undecided, a client that declared URL elicitation gets error -32042 with the
deferral page's URL, and any other client is held until the decision or `--wait`.

A repeat of a call (same connection, same tool, same arguments) before its answer was
given is the same deferral: the webhook-id is kept per call until the call is settled.
That is what lets a client that got -32042 call again after the approval and have the
approved call run, and what makes a client's retry of a held call wait on the same
deferral instead of asking a person twice. Once a call is answered with the decision,
the next identical call asks again.

An approved call is forwarded exactly once, with the approved arguments (a reviewer's
edits included) read from the deferral, not the client's: one lock per deferral, a
remembered result for calls that share it, and the execution report, which the domain
takes only once.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from typing import Any

import anyio
import mcp_types as types
from anyio.abc import TaskGroup
from mcp import ClientSession
from mcp.shared.exceptions import UrlElicitationRequiredError

from review.doors.mcp_gateway import bridge
from review.errors import DomainError
from review.models import utcnow
from review.services import Services

log = logging.getLogger(__name__)

MAX_WAITING = 200  # calls held and decisions watched at once, each a thread while it waits
MAX_OPEN_CALLS = 1000  # unsettled calls remembered per connection (oldest forgotten first)
MAX_CONNECTIONS = 1000  # connections whose calls are remembered (least recently used forgotten)
MAX_RESULTS = 256  # forwarded results kept for calls that share a deferral


def tool_error(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


def reported_result(result: types.CallToolResult) -> Any:
    """What the execution report keeps of the upstream's answer."""
    if result.structured_content is not None:
        return result.structured_content
    return [
        block.model_dump(mode="json", by_alias=True, exclude_none=True) for block in result.content
    ]


class Gateway:
    """The calls of every connection of one gateway process, to one upstream server."""

    def __init__(
        self,
        svc: Services,
        slug: str,
        upstream: ClientSession,
        tasks: TaskGroup,
        *,
        wait_seconds: float,
    ):
        self.svc = svc
        self.slug = slug
        self.upstream = upstream
        self.tasks = tasks  # where the watchers of URL elicitations run
        self.wait_seconds = wait_seconds
        self.stopping = threading.Event()
        self._open: dict[str, OrderedDict[str, str]] = {}  # connection -> call -> webhook-id
        self._locks: dict[str, anyio.Lock] = {}  # deferral id -> its forwarding lock
        self._results: OrderedDict[str, types.CallToolResult] = OrderedDict()
        self._watched: set[str] = set()
        self._waiting = anyio.CapacityLimiter(MAX_WAITING)

    def page(self, deferral_id: str) -> str:
        return f"{self.svc.settings.public_url}/deferrals/{deferral_id}"

    async def call(
        self, connection: str, call: bridge.Call, url_elicitation: bool, notify: Any
    ) -> types.CallToolResult:
        """The answer to one `tools/call`; raises UrlElicitationRequiredError for a client
        that declared URL elicitation while the deferral is undecided (`notify(id)` is then
        awaited once it is decided: notifications/elicitation/complete)."""
        calls = self._open.pop(connection, None) or OrderedDict()
        self._open[connection] = calls  # the most recently used connection last
        while len(self._open) > MAX_CONNECTIONS:
            self._open.pop(next(iter(self._open)))
        key = call.fingerprint()
        webhook_id = calls.get(key) or f"mcp_{uuid.uuid4().hex}"
        calls[key] = webhook_id
        while len(calls) > MAX_OPEN_CALLS:
            calls.popitem(last=False)
        try:
            state = await anyio.to_thread.run_sync(
                bridge.receive, self.svc, self.slug, webhook_id, call
            )
        except DomainError as exc:
            calls.pop(key, None)
            return tool_error(f"Countersign refused the call to {call.tool}: {bridge.explain(exc)}")
        if not state.decided:
            if url_elicitation:
                self._watch(state, notify)
                raise UrlElicitationRequiredError(
                    [
                        types.ElicitRequestURLParams(
                            message=f"A person must approve this call to {call.tool} in "
                            "Countersign first. Call it again once it is decided.",
                            url=self.page(state.id),
                            elicitation_id=state.id,
                        )
                    ],
                    message=f"{call.tool} needs approval: {self.page(state.id)}",
                )
            state = await self._hold(state, self._hold_seconds(state))
            if not state.decided:
                return tool_error(
                    f"No decision yet on this call to {call.tool}: it waits for a person at "
                    f"{self.page(state.id)}. Call the tool again with the same arguments "
                    "once it is decided."
                )
        calls.pop(key, None)  # settled: the answer below is the decision's
        if state.status == "approved":
            return await self.forward(state)
        return tool_error(self._refusal_text(call.tool, state))

    def _hold_seconds(self, state: bridge.State) -> float:
        left = (state.expires_at - utcnow()).total_seconds()
        return max(0.0, min(self.wait_seconds, left))

    async def _hold(self, state: bridge.State, seconds: float) -> bridge.State:
        """Wait (in a thread, holding no database connection) for the decision. A call the
        client cancels stops waiting within a second."""
        if seconds <= 0:
            return state
        gone = threading.Event()
        try:
            return await anyio.to_thread.run_sync(
                lambda: bridge.wait_for_decision(
                    self.svc, state.id, seconds, lambda: gone.is_set() or self.stopping.is_set()
                ),
                limiter=self._waiting,
                abandon_on_cancel=True,
            )
        finally:
            gone.set()

    def _watch(self, state: bridge.State, notify: Any) -> None:
        """Send notifications/elicitation/complete when the deferral is decided (at most
        until it expires), once per deferral."""
        if state.id in self._watched:
            return
        self._watched.add(state.id)
        self.tasks.start_soon(self._notify_when_decided, state, notify)

    async def _notify_when_decided(self, state: bridge.State, notify: Any) -> None:
        try:
            seconds = (state.expires_at - utcnow()).total_seconds() + 5
            ended = await self._hold(state, seconds)
            if ended.decided:
                await notify(state.id)
        except Exception:  # a watcher must never take the gateway down
            log.exception("watching %s for its decision failed", state.id)
        finally:
            self._watched.discard(state.id)

    def _refusal_text(self, tool: str, state: bridge.State) -> str:
        by = ", ".join(state.decided_by) or "Countersign"
        reason = f": {state.reason}" if state.reason else ""
        return f"The call to {tool} was {state.status} by {by}{reason} ({self.page(state.id)})"

    async def forward(self, approved: bridge.State) -> types.CallToolResult:
        """Forward an approved call to the upstream server, once, with the approved
        arguments; report its result as the execution."""
        lock = self._locks.setdefault(approved.id, anyio.Lock())
        async with lock:
            if approved.id in self._results:
                return self._results[approved.id]
            state = await anyio.to_thread.run_sync(bridge.read_state, self.svc, approved.id)
            problem = bridge.why_not_run(state)
            if problem is not None:
                return tool_error(f"The call to {state.tool} was not run: {problem}.")
            try:
                result = await self.upstream.call_tool(state.tool, state.args)
            except Exception as exc:  # the upstream failed: the execution failed
                log.warning("upstream call for %s failed: %s", state.id, exc)
                result = tool_error(f"The upstream MCP server failed: {exc}")
            await anyio.to_thread.run_sync(
                bridge.report,
                self.svc,
                self.slug,
                state,
                not result.is_error,
                reported_result(result),
            )
            self._results[state.id] = result
            while len(self._results) > MAX_RESULTS:
                self._results.popitem(last=False)
        if not lock.locked():
            self._locks.pop(approved.id, None)
        return result
