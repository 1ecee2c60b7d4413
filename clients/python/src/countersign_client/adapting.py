"""What the framework adapters share: stable idempotency keys, summaries, texts for the model.

Nothing here imports a framework; `openai_agents` and `langgraph` do.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from countersign_client.resources import Deferral

# A summary: a format string over the call's args ("Refund {amount} on {invoice}"), or a
# callable taking (tool name, args) and answering the line a reviewer reads first.
Summary = str | Callable[[str, dict[str, Any]], str]


def stable_key(*parts: str) -> str:
    """An idempotency key (webhook-id) that the same parts always give.

    A run that is resumed after a restart defers its tool calls again with the same key
    and the same body, so the service answers the deferral it made the first time.
    """
    digest = hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()
    return f"msg_{digest[:48]}"


def arguments_of(text: str | None) -> dict[str, Any]:
    """A tool call's arguments (JSON text from the model) as the action's args."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {"arguments": text}
    return value if isinstance(value, dict) else {"arguments": value}


def summary_for(
    tool: str, args: dict[str, Any], summary: Summary | Mapping[str, Summary] | None
) -> str:
    """The deferral's summary: `summary` for this tool (a template, a callable, or a dict
    of either by tool name), else the tool's name and its args as JSON."""
    if isinstance(summary, Mapping):
        summary = summary.get(tool)
    if callable(summary):
        return summary(tool, args)
    if isinstance(summary, str):
        try:
            return summary.format_map(args)
        except (KeyError, IndexError, ValueError, AttributeError):
            pass  # a template that does not fit this call: say what it is instead
    shown = json.dumps(args, ensure_ascii=False, sort_keys=True, default=str)
    line = f"{tool} {shown}"
    return line if len(line) <= 500 else line[:499] + "…"


def not_run_text(deferral: Deferral) -> str:
    """What the model is told when a call did not run: how the deferral ended, and why."""
    tool = deferral.action.get("tool")
    if not deferral.terminal:
        return f"Countersign: {tool} is still {deferral.status}, undecided. It did not run."
    decision = deferral.decision
    said = f" by {', '.join(decision.decided_by)}" if decision and decision.decided_by else ""
    reason = f": {decision.reason}" if decision and decision.reason else ""
    return f"Countersign: {tool} was {deferral.status}{said}{reason}. It did not run."


def already_ran_text(deferral: Deferral) -> str:
    """What the model is told about a call that ran before a restart: what was reported."""
    execution = deferral.execution or {}
    result = json.dumps(execution.get("result"), ensure_ascii=False, default=str)
    return (
        f"{deferral.action.get('tool')} already ran ({execution.get('outcome')}) before the "
        f"agent restarted; its reported result: {result}"
    )


def edited_text(deferral: Deferral) -> str:
    """For a tool that cannot run edited args: what the reviewer approved instead."""
    args = json.dumps(deferral.action.get("args"), ensure_ascii=False, sort_keys=True)
    return (
        f"Countersign: a reviewer approved {deferral.action.get('tool')} only with other "
        f"arguments: {args}. It did not run as you asked."
    )


def output_text(output: Any) -> str:
    """A tool's return value as the text of a tool message."""
    if isinstance(output, str):
        return output
    try:
        return json.dumps(output, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(output)
