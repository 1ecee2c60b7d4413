"""A LangGraph agent whose refunds wait for a person in Countersign.

    COUNTERSIGN_URL=http://127.0.0.1:5000 COUNTERSIGN_AGENT=billing-bot \\
    COUNTERSIGN_SECRET=whsec_... python examples/langgraph_refund.py [--amount 40]

The model is LangChain's fake chat model (GenericFakeChatModel), so no model service is
needed: it asks for one refund, then says it is done. The graph is agent -> tools ->
agent, with CountersignToolNode as the tools node: the refund becomes a deferral and the
graph interrupts. The program then waits for the decision (approve or reject it on the
reviewer pages) and resumes the graph with `resume_command`. Each refund that really runs
is appended to refunds.jsonl in --state-dir (default: the current folder).
"""

from __future__ import annotations

import argparse
import json
import os
import uuid
from pathlib import Path

from countersign_client import Countersign
from countersign_client.langgraph import CountersignToolNode, resume_command
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph


def build_graph(client: Countersign, ledger: Path, invoice: str, amount: int):
    @tool
    def refund(invoice: str, amount: int) -> dict:
        """Refund part of an invoice to the customer."""
        receipt = {"refund": f"R-{invoice}", "invoice": invoice, "amount": amount}
        with ledger.open("a", encoding="utf-8") as out:
            out.write(json.dumps(receipt) + "\n")
        print(f"refund ran: {receipt}", flush=True)
        return receipt

    call = {"name": "refund", "args": {"invoice": invoice, "amount": amount}, "id": "call_1"}
    model = GenericFakeChatModel(
        messages=iter([AIMessage(content="", tool_calls=[call]), AIMessage(content="Done.")])
    )

    def agent(state: MessagesState) -> dict:
        return {"messages": [model.invoke(state["messages"])]}

    def next_step(state: MessagesState) -> str:
        return "tools" if state["messages"][-1].tool_calls else END

    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_node(
        "tools",
        CountersignToolNode(
            client,
            [refund],
            on_behalf_of={"id": "alice@example.com", "display_name": "Alice"},
            summary={"refund": "Refund {amount} on {invoice}"},
            tool_prefix="billing.",
        ),
    )
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", next_step, ["tools", END])
    builder.add_edge("tools", "agent")
    return builder.compile(checkpointer=InMemorySaver())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--state-dir", default=".")
    parser.add_argument("--invoice", default="INV-1")
    parser.add_argument("--amount", type=int, default=40)
    options = parser.parse_args()
    ledger = Path(options.state_dir) / "refunds.jsonl"
    with Countersign(
        os.environ["COUNTERSIGN_URL"],
        agent=os.environ["COUNTERSIGN_AGENT"],
        secret=os.environ["COUNTERSIGN_SECRET"],
    ) as client:
        graph = build_graph(client, ledger, options.invoice, options.amount)
        config = {"configurable": {"thread_id": f"refund-{uuid.uuid4().hex[:12]}"}}
        ask = f"Refund {options.amount} on {options.invoice}"
        result = graph.invoke({"messages": [HumanMessage(ask)]}, config)
        while result.get("__interrupt__"):
            for pending in result["__interrupt__"]:
                for entry in pending.value["countersign"]:
                    print(f"waiting for {entry['deferral_id']} ({entry['name']})", flush=True)
            command = resume_command(client, result["__interrupt__"])
            print(f"resuming with {json.dumps(command.resume)}", flush=True)
            result = graph.invoke(command, config)
    for message in result["messages"]:
        if isinstance(message, ToolMessage):
            print(f"tool {message.name} ({message.status}): {message.content}", flush=True)
    print(f"final: {result['messages'][-1].content}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
