"""An OpenAI Agents SDK agent whose refunds wait for a person in Countersign.

    COUNTERSIGN_URL=http://127.0.0.1:5000 COUNTERSIGN_AGENT=billing-bot \\
    COUNTERSIGN_SECRET=whsec_... python examples/openai_agents_refund.py [--amount 40]

The model is the SDK's scripted test model (agents.testing.ScriptedModel), so no model
service is needed: it asks for one refund, then says what came of it. The run pauses at
the refund, which becomes a deferral; approve or reject it on the reviewer pages. The
paused run is saved under --state-dir (default ./countersign-runs): stop this program
while it waits and start it again, and it picks the run up where it was, without a
second deferral. Each refund that really runs is appended to refunds.jsonl there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import uuid
from pathlib import Path

from agents import Agent, set_tracing_disabled
from agents.testing import ModelStep, ScriptedModel, assistant_message, function_call
from countersign_client import AsyncCountersign
from countersign_client.openai_agents import CountersignApprovals, RunStore


def scripted_model(invoice: str, amount: int) -> ScriptedModel:
    """Asks for the refund until a tool output comes back, then reports that output."""

    def respond(call):
        items = call.input if isinstance(call.input, list) else []
        outputs = [
            item
            for item in items
            if isinstance(item, dict) and item.get("type") == "function_call_output"
        ]
        if outputs:
            return [assistant_message(f"Refund outcome: {outputs[-1]['output']}")]
        args = {"invoice": invoice, "amount": amount}
        return [function_call("refund", args, call_id=f"call_refund_{invoice}")]

    return ScriptedModel([ModelStep.respond(respond), ModelStep.respond(respond)])


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--state-dir", default="countersign-runs")
    parser.add_argument("--invoice", default="INV-1")
    parser.add_argument("--amount", type=int, default=40)
    options = parser.parse_args()
    set_tracing_disabled(True)  # no trace export: this example talks to Countersign only

    state_dir = Path(options.state_dir)
    store = RunStore(state_dir)
    ledger = state_dir / "refunds.jsonl"
    client = AsyncCountersign(
        os.environ["COUNTERSIGN_URL"],
        agent=os.environ["COUNTERSIGN_AGENT"],
        secret=os.environ["COUNTERSIGN_SECRET"],
    )
    approvals = CountersignApprovals(
        client,
        store,
        on_behalf_of={"id": "alice@example.com", "display_name": "Alice"},
        tool_prefix="billing.",
        on_waiting=lambda d: print(f"waiting for {d.id} ({d.status}): {d.summary}", flush=True),
    )

    @approvals.tool(summary="Refund {amount} on {invoice}")
    def refund(invoice: str, amount: int) -> dict:
        """Refund part of an invoice to the customer."""
        receipt = {"refund": f"R-{invoice}", "invoice": invoice, "amount": amount}
        with ledger.open("a", encoding="utf-8") as out:
            out.write(json.dumps(receipt) + "\n")
        print(f"refund ran: {receipt}", flush=True)
        return receipt

    agent = Agent(
        name="billing",
        instructions="Refund what the customer asks for.",
        model=scripted_model(options.invoice, options.amount),
        tools=[refund],
    )
    waiting = store.run_ids()
    if waiting:
        run_id = waiting[0]
        print(f"resuming saved run {run_id}", flush=True)
    else:
        run_id = f"refund-{uuid.uuid4().hex[:12]}"
        print(f"starting run {run_id}", flush=True)
    async with client:
        result = await approvals.run(
            agent, f"Refund {options.amount} on {options.invoice}", run_id=run_id
        )
    print(f"final: {result.final_output}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
