"""Countersign for the OpenAI Agents SDK: tools that need approval become deferrals.

Install with the extra: `pip install 'countersign-client[openai-agents]'`.

    cs = AsyncCountersign(url, agent="billing-bot", secret=...)
    approvals = CountersignApprovals(cs, RunStore("/var/lib/billing-bot/runs"),
                                     on_behalf_of="alice@example.com", tool_prefix="billing.")

    @approvals.tool(summary="Refund {amount} on {invoice}")
    def refund(invoice: str, amount: int) -> dict: ...

    agent = Agent(name="billing", tools=[refund])
    result = await approvals.run(agent, "Refund INV-1", run_id="ticket-4711")

A run. `run` runs the agent. Each call of a tool with `needs_approval` pauses the run as
an interruption, and each interruption becomes a deferral: `action.tool` is the SDK's
tool name with `tool_prefix` in front (so that policies tell one agent's `refund` from
another's), `args` the call's parsed arguments, and the idempotency key is derived from
(run_id, call id). The paused RunState and the deferral ids are saved in the RunStore
(one JSON file per run) before anything waits. Then `run` waits for each decision,
approves the interruptions Countersign approved, rejects the others with a message for
the model saying how they ended and why, and resumes the run; until it ends without
interruptions, when its file is removed.

A restart. Call `run` again with the same run_id (the input is then not needed): the saved
RunState is loaded and the same deferrals are waited on; none is made twice.
`store.run_ids()` lists the runs still waiting.

Tools made with `approvals.tool` check the approval again as they start (approved, for this
very action by its digest, not lapsed, not executed already), run with the approved args
(a reviewer's edits included), note in the store that they ran, and report the execution:
`succeeded` with what they returned, or `failed` with the exception's text (the model then
gets `failure_error_function`'s message, by default the SDK's). A call that ran before a
restart does not run again: the model is told that it ran, and what was reported.

Other tools with `needs_approval=True` are approved or rejected the same way, and what they
returned is reported as `succeeded` once the resumed run is back: the SDK turns their
exceptions into text, so a failure cannot be told apart, and a restart between their run
and the report runs them again. The SDK runs them with the model's arguments, so an edited
approval cannot apply to them: the call is rejected, and the model told what was approved.

The RunState file holds the conversation and the pending tool calls: keep the store where
only the agent reads and writes (the SDK loads state from trusted storage only).
"""

from __future__ import annotations

import contextvars
import copy
import inspect
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agents import Agent, FunctionTool, Runner, RunResult, RunState, function_tool
from agents.items import ToolApprovalItem, ToolCallOutputItem
from agents.tool import default_tool_error_function
from agents.tool_context import ToolContext

from countersign_client.adapting import (
    Summary,
    already_ran_text,
    arguments_of,
    edited_text,
    not_run_text,
    stable_key,
    summary_for,
)
from countersign_client.approval import ensure_runnable, failure_text, reportable
from countersign_client.async_client import AsyncCountersign
from countersign_client.errors import (
    AlreadyExecuted,
    ApprovalTimeout,
    CountersignError,
    ExecutionNotReported,
    NotApproved,
)
from countersign_client.resources import Deferral
from countersign_client.saved_runs import RunStore, SavedRun

__all__ = ["CountersignApprovals", "RunStore", "SavedRun"]


@dataclass
class _Resuming:
    """The run being resumed, as the guarded tools see it (through a context variable)."""

    store: RunStore
    saved: SavedRun
    approved: dict[str, str]  # call id -> deferral id, for the calls approved this turn


_RESUMING: contextvars.ContextVar[_Resuming | None] = contextvars.ContextVar(
    "countersign_resuming", default=None
)


class CountersignApprovals:
    """Turns a run's interruptions into deferrals and Countersign's decisions into
    approvals and rejections (see the module's docstring).

    `summary`: a template over the args, a callable (tool, args) -> str, or a dict of
    either by tool name. `wait_timeout`: seconds to wait for each decision (None: until
    the deferral ends; it expires in the end); past it ApprovalTimeout is raised and the
    run stays saved. `defer_options`: more fields for every deferral (labels, expires_in,
    rationale, trace_url...). `on_waiting`: called with each deferral before waiting on it
    (to tell someone the run waits, and for what).
    """

    def __init__(
        self,
        client: AsyncCountersign,
        store: RunStore,
        *,
        on_behalf_of: str | dict[str, Any] | None = None,
        summary: Summary | Mapping[str, Summary] | None = None,
        tool_prefix: str = "",
        wait_timeout: float | None = None,
        defer_options: dict[str, Any] | None = None,
        on_waiting: Callable[[Deferral], Any] | None = None,
    ):
        self.client = client
        self.store = store
        self.on_behalf_of = on_behalf_of
        self.summary = summary
        self.tool_prefix = tool_prefix
        self.wait_timeout = wait_timeout
        self.defer_options = dict(defer_options or {})
        self.on_waiting = on_waiting
        self._guarded: set[str] = set()
        self._summaries: dict[str, Summary] = {}

    # --- tools ---------------------------------------------------------------------------

    def tool(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        summary: Summary | None = None,
        failure_error_function: Callable[..., Any] | None = default_tool_error_function,
        **function_tool_options: Any,
    ) -> Any:
        """`function_tool(needs_approval=True)` that runs only as Countersign approved it
        and reports what it did. Use bare (`@approvals.tool`) or with options."""

        def make(fn: Callable[..., Any]) -> FunctionTool:
            inner = function_tool(
                fn, needs_approval=True, failure_error_function=None, **function_tool_options
            )
            self._guarded.add(inner.name)
            if summary is not None:
                self._summaries[inner.name] = summary

            async def invoke(ctx: ToolContext[Any], arguments: str) -> Any:
                return await self._invoke(inner, ctx, arguments, failure_error_function)

            guarded = copy.copy(inner)
            guarded.on_invoke_tool = invoke
            return guarded

        return make(fn) if fn is not None else make

    async def _invoke(
        self,
        inner: FunctionTool,
        ctx: ToolContext[Any],
        arguments: str,
        on_failure: Callable[..., Any] | None,
    ) -> Any:
        resuming = _RESUMING.get()
        deferral_id = resuming.approved.get(ctx.tool_call_id) if resuming else None
        if resuming is None or deferral_id is None:
            raise NotApproved(
                f"{inner.name} (call {ctx.tool_call_id}) has no approval from Countersign: "
                "run the agent through CountersignApprovals.run"
            )
        current = await self.client.get(deferral_id)
        approval = ensure_runnable(current, self._action_tool(inner.name), arguments_of(arguments))
        try:
            output = await inner.on_invoke_tool(ctx, json.dumps(approval.args))
        except Exception as exc:
            text = failure_text(exc)
            self._note_ran(resuming, ctx.tool_call_id, "failed", text)
            try:
                await self.client.report_execution(approval, "failed", text)
            except CountersignError as report_error:
                exc.add_note(f"countersign: this failure was not reported ({report_error})")
            if on_failure is None:
                raise
            message = on_failure(ctx, exc)
            return await message if inspect.isawaitable(message) else message
        result = reportable(output)
        self._note_ran(resuming, ctx.tool_call_id, "succeeded", result)
        try:
            await self.client.report_execution(approval, "succeeded", result)
        except CountersignError as exc:
            raise ExecutionNotReported(
                f"{inner.name} ({approval.id}) ran, but its report did not reach "
                f"Countersign: {exc}",
                approval,
                "succeeded",
                result,
            ) from exc
        return output

    @staticmethod
    def _note_ran(resuming: _Resuming, call_id: str, outcome: str, result: Any) -> None:
        """Remember in the store that the call ran, before reporting it: a restart must
        not run it again even when the report did not get through."""
        resuming.saved.ran[call_id] = {"outcome": outcome, "result": result}
        resuming.store.save(resuming.saved)

    # --- runs ------------------------------------------------------------------------------

    async def run(
        self,
        agent: Agent[Any],
        input: Any = None,
        *,
        run_id: str,
        on_behalf_of: str | dict[str, Any] | None = None,
        context: Any = None,
        **runner_options: Any,
    ) -> RunResult:
        """Run `agent` to its end, each interrupted call decided in Countersign.

        With a saved run under `run_id` (a restart) it goes on from there and `input` is
        not used; else `input` starts it. `runner_options` go to every `Runner.run`.
        """
        saved = self.store.load(run_id)
        if saved is None:
            if input is None:
                raise ValueError(f"no saved run {run_id!r}: give the input to start it")
            result = await Runner.run(agent, input, context=context, **runner_options)
            if not result.interruptions:
                return result
            saved = SavedRun(run_id, result.to_state().to_json())
            self.store.save(saved)
        who = on_behalf_of if on_behalf_of is not None else self.on_behalf_of
        while True:
            state = await RunState.from_json(agent, saved.state, context_override=context)
            interruptions = state.get_interruptions()
            for item in interruptions:
                if item.call_id in saved.deferrals:
                    deferral = await self.client.get(saved.deferrals[item.call_id])
                else:
                    deferral = await self._defer(run_id, item, who)
                    saved.deferrals[item.call_id] = deferral.id
                    self.store.save(saved)
                if self.on_waiting is not None:
                    self.on_waiting(deferral)
            approved: dict[str, str] = {}
            for item in interruptions:
                deferral_id = saved.deferrals[item.call_id]
                refusal = await self._refusal(item, await self._decided(deferral_id), saved)
                if refusal is None:
                    state.approve(item)
                    approved[item.call_id] = deferral_id
                else:
                    state.reject(item, rejection_message=refusal)
            token = _RESUMING.set(_Resuming(self.store, saved, approved))
            try:
                result = await Runner.run(agent, state, **runner_options)
            finally:
                _RESUMING.reset(token)
            await self._report_unguarded(result, interruptions, approved)
            if not result.interruptions:
                self.store.remove(run_id)
                return result
            saved = SavedRun(run_id, result.to_state().to_json())
            self.store.save(saved)

    def _action_tool(self, name: str | None) -> str:
        return f"{self.tool_prefix}{name}"

    async def _defer(
        self, run_id: str, item: ToolApprovalItem, on_behalf_of: str | dict[str, Any] | None
    ) -> Deferral:
        args = arguments_of(item.arguments)
        name = str(item.name)
        return await self.client.defer(
            tool=self._action_tool(name),
            args=args,
            summary=summary_for(name, args, self._summaries.get(name, self.summary)),
            on_behalf_of=on_behalf_of,
            idempotency_key=stable_key("openai-agents", run_id, str(item.call_id)),
            **self.defer_options,
        )

    async def _decided(self, deferral_id: str) -> Deferral:
        """The deferral once it has ended (ApprovalTimeout past `wait_timeout`)."""
        deadline = None if self.wait_timeout is None else time.monotonic() + self.wait_timeout
        while True:
            left = 3600.0 if deadline is None else deadline - time.monotonic()
            deferral = await self.client.wait(deferral_id, timeout=max(0.0, left))
            if deferral.terminal:
                return deferral
            if deadline is not None and time.monotonic() >= deadline:
                raise ApprovalTimeout(
                    f"{deferral.action.get('tool')} ({deferral_id}) is still {deferral.status}",
                    deferral,
                )

    async def _refusal(
        self, item: ToolApprovalItem, deferral: Deferral, saved: SavedRun
    ) -> str | None:
        """None when the call may run now; else what the model is told instead."""
        ran = saved.ran.get(str(item.call_id))
        if ran is not None:  # it ran before a restart; make sure it is reported
            if deferral.approved and deferral.execution is None:
                try:
                    deferral = await self.client.report_execution(
                        deferral, ran["outcome"], ran["result"]
                    )
                except CountersignError:
                    pass  # the service refused it or is out of reach: the call still ran once
            return already_ran_text(deferral) if deferral.execution else "It already ran."
        try:
            ensure_runnable(deferral, self._action_tool(item.name), arguments_of(item.arguments))
        except AlreadyExecuted:
            return already_ran_text(deferral)
        except NotApproved as exc:
            return not_run_text(deferral) if not deferral.approved else f"Countersign: {exc}."
        decision = deferral.decision
        if decision and decision.edited and item.name not in self._guarded:
            return edited_text(deferral)
        return None

    async def _report_unguarded(
        self, result: RunResult, interruptions: list[ToolApprovalItem], approved: dict[str, str]
    ) -> None:
        """Report what the approved tools that are not ours returned (ours report themselves)."""
        unguarded = {
            item.call_id
            for item in interruptions
            if item.call_id in approved and item.name not in self._guarded
        }
        for item in result.new_items:
            if isinstance(item, ToolCallOutputItem) and item.call_id in unguarded:
                deferral = await self.client.get(approved[item.call_id])
                if deferral.execution is None:
                    await self.client.report_execution(
                        deferral, "succeeded", reportable(item.output)
                    )
