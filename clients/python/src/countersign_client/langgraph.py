"""Countersign for LangGraph: a tool node that defers each tool call and `interrupt()`s, and
a resume helper that turns Countersign's decisions into `Command(resume=...)`.

Install with the extra: `pip install 'countersign-client[langgraph]'`.

    cs = Countersign(url, agent="billing-bot", secret=...)
    tools = CountersignToolNode(cs, [refund], summary={"refund": "Refund {amount} on {invoice}"},
                                on_behalf_of="alice@example.com", tool_prefix="billing.")
    builder.add_node("tools", tools)                     # where a ToolNode would be
    graph = builder.compile(checkpointer=InMemorySaver())  # interrupts need a checkpointer
    config = {"configurable": {"thread_id": "ticket-4711"}}
    result = graph.invoke({"messages": [...]}, config)
    while result.get("__interrupt__"):
        result = graph.invoke(resume_command(cs, result["__interrupt__"]), config)

The node. For the tool calls of the last AI message it defers each call (`action.tool` is
`tool_prefix` and the tool's name, `args` the call's args, the idempotency key comes from
the thread id and the call id: LangGraph runs a node again from its start when it resumes,
and the node then finds the same deferrals), then interrupts with the value that
LangChain's HumanInTheLoopMiddleware raises in its batched mode (`action_requests`,
`review_configs`) and `countersign`: each call's deferral.

`resume_command` waits for those deferrals and answers in the middleware's decision
shape, `{"decisions": [...]}` in the order of the calls: `{"type": "approve"}`;
`{"type": "edit", "edited_action": {"name": ..., "args": ...}}` when a reviewer approved
edited args; `{"type": "reject", "message": "<how it ended, by whom, why>"}`.

On resume the node reads each deferral again: the service decides, not the resume value.
A call runs only when Countersign approved exactly it (by digest, before `valid_until`,
not executed already) and the resume did not reject it (a reject is a veto); it runs with
the approved args (edits included), its execution is reported (`succeeded` with the
tool's output, `failed` with the exception's text), and it is answered with a
ToolMessage. A call that did not run gets a ToolMessage with status "error" saying why.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.messages import ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, StructuredTool
from langgraph.types import Command, Interrupt, interrupt

from countersign_client.adapting import (
    Summary,
    already_ran_text,
    not_run_text,
    output_text,
    stable_key,
    summary_for,
)
from countersign_client.approval import ensure_runnable, failure_text, reportable
from countersign_client.client import Countersign
from countersign_client.errors import (
    AlreadyExecuted,
    ApprovalTimeout,
    CountersignError,
    ExecutionNotReported,
    NotApproved,
)
from countersign_client.resources import Deferral

__all__ = ["CountersignToolNode", "decision_for", "resume_command"]

DECISIONS = ["approve", "edit", "reject"]


class CountersignToolNode:
    """A graph node that runs tool calls only as Countersign decided them (see the module).

    `summary`: a template over the args, a callable (tool, args) -> str, or a dict of
    either by tool name. `defer_options`: more fields for every deferral (labels,
    expires_in, rationale, trace_url...).
    """

    def __init__(
        self,
        client: Countersign,
        tools: Sequence[BaseTool | Callable[..., Any]],
        *,
        on_behalf_of: str | dict[str, Any] | None = None,
        summary: Summary | Mapping[str, Summary] | None = None,
        tool_prefix: str = "",
        messages_key: str = "messages",
        defer_options: dict[str, Any] | None = None,
    ):
        self.client = client
        self.tools = {t.name: t for t in map(_as_tool, tools)}
        self.on_behalf_of = on_behalf_of
        self.summary = summary
        self.tool_prefix = tool_prefix
        self.messages_key = messages_key
        self.defer_options = dict(defer_options or {})

    def __call__(self, state: Any, config: RunnableConfig) -> dict[str, list[ToolMessage]]:
        calls = _tool_calls(state, self.messages_key)
        thread = (config.get("configurable") or {}).get("thread_id")
        if thread is None:
            raise ValueError("CountersignToolNode needs a thread_id: compile with a checkpointer")
        known = [call for call in calls if call["name"] in self.tools]
        deferrals = {call["id"]: self._defer(str(thread), call) for call in known}
        decisions: dict[str, Any] = {}
        if known:
            answer = interrupt(self._request(known, deferrals))
            given = answer.get("decisions") if isinstance(answer, dict) else None
            if isinstance(given, list) and len(given) == len(known):
                decisions = {call["id"]: d for call, d in zip(known, given, strict=True)}
        messages = []
        for call in calls:
            if call["name"] not in self.tools:
                messages.append(_answer(call, f"There is no tool {call['name']!r}.", "error"))
            else:
                messages.append(self._run(call, deferrals[call["id"]], decisions.get(call["id"])))
        return {self.messages_key: messages}

    def _action_tool(self, name: str) -> str:
        return f"{self.tool_prefix}{name}"

    def _defer(self, thread: str, call: dict[str, Any]) -> Deferral:
        args = dict(call.get("args") or {})
        return self.client.defer(
            tool=self._action_tool(call["name"]),
            args=args,
            summary=summary_for(call["name"], args, self.summary),
            on_behalf_of=self.on_behalf_of,
            idempotency_key=stable_key("langgraph", thread, str(call["id"])),
            **self.defer_options,
        )

    def _request(self, calls: list[dict], deferrals: dict[str, Deferral]) -> dict[str, Any]:
        """The interrupt's value: HumanInTheLoopMiddleware's HITLRequest, and the deferrals."""
        return {
            "action_requests": [
                {"name": c["name"], "args": c["args"], "description": deferrals[c["id"]].summary}
                for c in calls
            ],
            "review_configs": [
                {"action_name": name, "allowed_decisions": list(DECISIONS)}
                for name in dict.fromkeys(c["name"] for c in calls)
            ],
            "countersign": [
                {"deferral_id": deferrals[c["id"]].id, "tool_call_id": c["id"], "name": c["name"]}
                for c in calls
            ],
        }

    def _run(self, call: dict[str, Any], deferral: Deferral, decision: Any) -> ToolMessage:
        if isinstance(decision, dict) and decision.get("type") == "reject":
            return _answer(call, str(decision.get("message") or "Rejected."), "error")
        current = self.client.get(deferral.id)
        try:
            approval = ensure_runnable(current, self._action_tool(call["name"]), call["args"])
        except AlreadyExecuted:
            return _answer(call, already_ran_text(current))
        except NotApproved as exc:
            why = f"Countersign: {exc}. It did not run." if current.approved else None
            return _answer(call, why or not_run_text(current), "error")
        try:
            output = self.tools[call["name"]].invoke(approval.args)
        except Exception as exc:
            text = failure_text(exc)
            try:
                self.client.report_execution(approval, "failed", text)
            except CountersignError as report_error:
                exc.add_note(f"countersign: this failure was not reported ({report_error})")
            return _answer(call, text, "error")
        result = reportable(output)
        try:
            self.client.report_execution(approval, "succeeded", result)
        except CountersignError as exc:
            raise ExecutionNotReported(
                f"{call['name']} ({approval.id}) ran, but its report did not reach "
                f"Countersign: {exc}",
                approval,
                "succeeded",
                result,
            ) from exc
        return _answer(call, output_text(output))


def decision_for(deferral: Deferral, name: str | None = None) -> dict[str, Any]:
    """An ended deferral as HumanInTheLoopMiddleware's decision (`name`: the tool's name as
    the model called it, for an edit; else the deferral's `action.tool`)."""
    if deferral.approved:
        decision = deferral.decision
        if decision is not None and decision.edited:
            args = deferral.action.get("args")
            return {
                "type": "edit",
                "edited_action": {"name": name or deferral.action.get("tool"), "args": args},
            }
        return {"type": "approve"}
    return {"type": "reject", "message": not_run_text(deferral)}


def resume_command(
    client: Countersign,
    target: str | Interrupt | Sequence[Interrupt],
    *,
    timeout: float | None = None,
) -> Command:
    """Wait for the deferrals and answer with `Command(resume=...)`.

    `target`: the interrupts CountersignToolNode raised (`result["__interrupt__"]`, or one
    of them): resumed by interrupt id, `{id: {"decisions": [...]}}`; or one deferral id:
    `{"decisions": [decision]}`. `timeout`: seconds to wait for each deferral (None: until
    it ends); past it ApprovalTimeout.
    """
    if isinstance(target, str):
        return Command(resume={"decisions": [decision_for(_decided(client, target, timeout))]})
    interrupts = [target] if isinstance(target, Interrupt) else list(target)
    resume: dict[str, Any] = {}
    for pending in interrupts:
        value = pending.value
        entries = value.get("countersign") if isinstance(value, dict) else None
        if not isinstance(entries, list):
            raise ValueError(f"interrupt {pending.id} was not raised by CountersignToolNode")
        resume[pending.id] = {
            "decisions": [
                decision_for(_decided(client, e["deferral_id"], timeout), e.get("name"))
                for e in entries
            ]
        }
    return Command(resume=resume)


def _decided(client: Countersign, deferral_id: str, timeout: float | None) -> Deferral:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = 3600.0 if deadline is None else deadline - time.monotonic()
        deferral = client.wait(deferral_id, timeout=max(0.0, left))
        if deferral.terminal:
            return deferral
        if deadline is not None and time.monotonic() >= deadline:
            raise ApprovalTimeout(
                f"{deferral.action.get('tool')} ({deferral_id}) is still {deferral.status}",
                deferral,
            )


def _as_tool(tool: BaseTool | Callable[..., Any]) -> BaseTool:
    return tool if isinstance(tool, BaseTool) else StructuredTool.from_function(tool)


def _tool_calls(state: Any, key: str) -> list[dict[str, Any]]:
    messages = state.get(key) if isinstance(state, Mapping) else getattr(state, key, None)
    if not messages:
        return []
    return list(getattr(messages[-1], "tool_calls", None) or [])


def _answer(call: dict[str, Any], content: str, status: str = "success") -> ToolMessage:
    return ToolMessage(content=content, tool_call_id=call["id"], name=call["name"], status=status)
