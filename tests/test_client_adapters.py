"""The client's framework adapters (OpenAI Agents SDK, LangGraph): their examples run as
programs against a real Countersign (gunicorn) while a reviewer decides
through the domain; and, without a server, what the adapters decide from a deferral."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from agents import Agent, Runner, set_tracing_disabled
from agents.exceptions import UserError
from agents.testing import ModelStep, ScriptedModel, assistant_message, function_call
from countersign_client import AsyncCountersign, Countersign, Deferral, NotApproved, RetryPolicy
from countersign_client.adapting import stable_key, summary_for
from countersign_client.langgraph import CountersignToolNode, decision_for, resume_command
from countersign_client.openai_agents import CountersignApprovals, RunStore
from langchain.agents import create_agent
from langchain.agents.middleware import HumanInTheLoopMiddleware
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.types import Command

from tests.client_support import decide_now, deferral_ids, next_deferral
from tests.helpers import ROOT, reviewer, wait_for

pytest_plugins = ["tests.client_server"]

EXAMPLES = ROOT / "clients" / "python" / "examples"
QUICK = RetryPolicy(first_delay=0.05, max_delay=0.2, poll_max_delay=0.2)
SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
RECEIPT = {"refund": "R-INV-1", "invoice": "INV-1", "amount": 40}


@pytest.fixture
def billing_bot(make_agent):
    return make_agent("billing-bot")


@pytest.fixture
def cs(countersign_server, billing_bot):
    client = Countersign(
        countersign_server.base_url, agent=billing_bot.slug, secret=billing_bot.secret, retry=QUICK
    )
    yield client
    client.close()


@pytest.fixture
def rita(svc):
    return reviewer(svc, "rita")


class Example:
    """One run of an example program, its output (stdout and stderr) in a file."""

    def __init__(self, script: str, env: dict[str, str], folder: Path, *args: str):
        self.output = folder / f"{script}.{len(list(folder.glob(script + '.*')))}.out"
        with self.output.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, str(EXAMPLES / script), *args],
                cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def said(self) -> str:
        return self.output.read_text(errors="replace")

    def says(self, text: str, timeout: float = 60) -> None:
        wait_for(lambda: text in self.said(), timeout=timeout, interval=0.1, message=self.said)

    def finished(self, timeout: float = 90) -> str:  # 90: one whole long-poll and more
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"still running after {timeout} s:\n{self.said()}") from None
        assert code == 0, self.said()
        return self.said()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()


@pytest.fixture
def run_example(countersign_server, billing_bot, tmp_path):
    """Start an example against the served Countersign, as billing-bot, in tmp_path/work."""
    folder = tmp_path / "work"
    folder.mkdir()
    env = {
        **os.environ,
        "COUNTERSIGN_URL": countersign_server.base_url,
        "COUNTERSIGN_AGENT": billing_bot.slug,
        "COUNTERSIGN_SECRET": billing_bot.secret,
    }
    started: list[Example] = []

    def start(script: str, *args: str) -> Example:
        started.append(Example(script, env, folder, *args))
        return started[-1]

    start.folder = folder  # type: ignore[attr-defined]
    yield start
    for example in started:
        example.kill()


def ledger(folder: Path) -> list[dict]:
    path = folder / "refunds.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# --- OpenAI Agents SDK ---------------------------------------------------------------------


def test_an_openai_agents_run_survives_a_restart_while_it_waits_and_refunds_once_approved(
    run_example, cs, svc, rita
):
    runs = run_example.folder / "runs"
    first = run_example("openai_agents_refund.py", "--state-dir", str(runs))
    d_id = next_deferral(svc, timeout=60)
    first.says(f"waiting for {d_id}")
    assert RunStore(runs).run_ids()  # the paused RunState is on disk before it waits
    first.kill()  # the process dies while it waits

    second = run_example("openai_agents_refund.py", "--state-dir", str(runs))
    second.says(f"waiting for {d_id}")
    assert "resuming saved run" in second.said()
    assert deferral_ids(svc) == {d_id}  # the restart waits on the same deferral
    assert not ledger(runs)

    assert decide_now(svc, rita, d_id, "approve") == "approved"
    said = second.finished()
    assert said.count("refund ran:") == 1
    assert ledger(runs) == [RECEIPT]
    assert f"final: Refund outcome: {json.dumps(RECEIPT)}" in said.replace("'", '"')
    deferral = cs.get(d_id)
    assert deferral.action == {"tool": "billing.refund", "args": {"invoice": "INV-1", "amount": 40}}
    assert deferral.summary == "Refund 40 on INV-1"
    assert deferral.execution["outcome"] == "succeeded"
    assert deferral.execution["result"] == RECEIPT
    assert RunStore(runs).run_ids() == []  # a finished run leaves nothing saved
    assert deferral_ids(svc) == {d_id}


def test_an_openai_agents_refund_that_is_rejected_never_runs_and_the_model_hears_why(
    run_example, cs, svc, rita
):
    runs = run_example.folder / "runs"
    example = run_example("openai_agents_refund.py", "--state-dir", str(runs))
    d_id = next_deferral(svc, timeout=60)
    example.says(f"waiting for {d_id}")
    assert decide_now(svc, rita, d_id, "reject", "Refunds over the phone only") == "rejected"
    said = example.finished()
    assert "refund ran" not in said and not ledger(runs)
    assert "was rejected by rita: Refunds over the phone only. It did not run." in said
    assert cs.get(d_id).execution is None
    assert RunStore(runs).run_ids() == []


def asks_for_a_refund_then_reports(call):
    """A scripted model's step: ask for the refund until its output comes back."""
    items = call.input if isinstance(call.input, list) else []
    outputs = [i for i in items if isinstance(i, dict) and i.get("type") == "function_call_output"]
    if outputs:
        return [assistant_message(f"outcome: {outputs[-1]['output']}")]
    return [function_call("refund", {"invoice": "INV-1", "amount": 40}, call_id="call_1")]


def test_an_openai_agents_run_resumed_from_before_its_tool_ran_does_not_run_it_again(
    countersign_server, billing_bot, svc, rita, tmp_path
):
    set_tracing_disabled(True)
    ran = []
    store = RunStore(tmp_path / "runs")

    async def scenario():
        async with AsyncCountersign(
            countersign_server.base_url, billing_bot.slug, billing_bot.secret, retry=QUICK
        ) as client:
            waiting = asyncio.Event()
            approvals = CountersignApprovals(
                client, store, tool_prefix="billing.", on_waiting=lambda d: waiting.set()
            )

            @approvals.tool
            def refund(invoice: str, amount: int) -> dict:
                """Refund."""
                ran.append(amount)
                return {"refund": "R-1"}

            def agent():
                model = ScriptedModel([ModelStep.respond(asks_for_a_refund_then_reports)] * 2)
                return Agent(name="billing", model=model, tools=[refund])

            running = asyncio.create_task(approvals.run(agent(), "refund", run_id="r-1"))
            await asyncio.wait_for(waiting.wait(), 30)
            d_id = await asyncio.to_thread(next_deferral, svc)
            paused = store.load("r-1")
            assert paused.deferrals == {"call_1": d_id}
            await asyncio.to_thread(decide_now, svc, rita, d_id, "approve")
            first = await running
            # As if the process had died after the refund and its report, before its
            # saved run was removed: started again, it finds the saved run from before.
            store.save(paused)
            again = await approvals.run(agent(), run_id="r-1")
            return d_id, first, again

    d_id, first, again = asyncio.run(scenario())
    assert ran == [40]
    assert first.final_output == "outcome: {'refund': 'R-1'}"
    assert again.final_output.startswith(
        "outcome: billing.refund already ran (succeeded) before the agent restarted; "
        'its reported result: {"refund": "R-1"}'
    )
    assert deferral_ids(svc) == {d_id}
    assert store.run_ids() == []


def test_a_guarded_tool_refuses_to_run_when_a_run_was_approved_outside_countersign(tmp_path):
    set_tracing_disabled(True)
    ran = []
    # Nothing listens there: the tool refuses before it would ask.
    client = AsyncCountersign("http://127.0.0.1:9", agent="billing-bot", secret=SECRET)
    approvals = CountersignApprovals(client, RunStore(tmp_path))

    @approvals.tool
    def refund(invoice: str, amount: int) -> dict:
        """Refund."""
        ran.append(invoice)
        return {}

    model = ScriptedModel(
        [[function_call("refund", {"invoice": "INV-1", "amount": 1}, call_id="c1")],
         [assistant_message("done")]]
    )  # fmt: skip
    agent = Agent(name="billing", model=model, tools=[refund])

    async def approve_by_hand():
        result = await Runner.run(agent, "refund")
        state = result.to_state()
        state.approve(state.get_interruptions()[0])
        async with client:
            return await Runner.run(agent, state)

    with pytest.raises(UserError, match="no approval from Countersign") as refused:
        asyncio.run(approve_by_hand())
    assert isinstance(refused.value.__cause__, NotApproved)
    assert ran == []


# --- LangGraph -------------------------------------------------------------------------------


def test_a_langgraph_refund_runs_once_approved_and_its_execution_is_reported(
    run_example, cs, svc, rita
):
    example = run_example("langgraph_refund.py")
    d_id = next_deferral(svc, timeout=60)
    example.says(f"waiting for {d_id}")
    assert decide_now(svc, rita, d_id, "approve") == "approved"
    said = example.finished()
    assert 'resuming with {"' in said and '{"decisions": [{"type": "approve"}]}' in said
    assert said.count("refund ran:") == 1
    assert ledger(run_example.folder) == [RECEIPT]
    assert f"tool refund (success): {json.dumps(RECEIPT)}" in said
    deferral = cs.get(d_id)
    assert deferral.action["tool"] == "billing.refund"
    assert deferral.execution["outcome"] == "succeeded"
    assert deferral.execution["result"] == RECEIPT
    assert deferral_ids(svc) == {d_id}  # the node ran twice, deferred once


def test_a_langgraph_refund_that_is_rejected_never_runs(run_example, cs, svc, rita):
    example = run_example("langgraph_refund.py")
    d_id = next_deferral(svc, timeout=60)
    example.says(f"waiting for {d_id}")
    assert decide_now(svc, rita, d_id, "reject", "Wrong invoice") == "rejected"
    said = example.finished()
    assert '"type": "reject"' in said
    assert (
        "tool refund (error): Countersign: billing.refund was rejected by rita: Wrong invoice"
        in said
    )
    assert "refund ran" not in said and not ledger(run_example.folder)
    assert cs.get(d_id).execution is None


def test_a_langgraph_resume_that_says_approve_does_not_run_what_countersign_has_not_approved(
    cs, svc
):
    ran = []

    def refund(invoice: str, amount: int) -> dict:
        """Refund."""
        ran.append(invoice)
        return {}

    call = {"name": "refund", "args": {"invoice": "INV-1", "amount": 40}, "id": "call_1"}
    builder = StateGraph(MessagesState)
    builder.add_node("agent", lambda state: {"messages": [AIMessage("", tool_calls=[call])]})
    builder.add_node("tools", CountersignToolNode(cs, [refund], on_behalf_of="alice@example.com"))
    builder.add_edge(START, "agent")
    builder.add_edge("agent", "tools")
    graph = builder.compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t-1"}}

    paused = graph.invoke({"messages": [HumanMessage("refund")]}, config)
    (pending,) = paused["__interrupt__"]
    (entry,) = pending.value["countersign"]
    assert pending.value["action_requests"] == [
        {
            "name": "refund",
            "args": call["args"],
            "description": 'refund {"amount": 40, "invoice": "INV-1"}',
        }
    ]
    forged = Command(resume={pending.id: {"decisions": [{"type": "approve"}]}})
    answered = graph.invoke(forged, config)
    message = answered["messages"][-1]
    assert message.status == "error" and "is still pending" in message.content
    assert ran == []
    assert deferral_ids(svc) == {entry["deferral_id"]}
    assert cs.get(entry["deferral_id"]).status == "pending"


# --- without a server ------------------------------------------------------------------------


def resource(**changes) -> Deferral:
    raw = {
        "id": "dfr_1",
        "status": "approved",
        "action": {"tool": "billing.refund", "args": {"invoice": "INV-1", "amount": 40}},
        "decision": {"outcome": "approved", "reason": None, "decided_by": ["rita"]},
    }
    raw.update(changes)
    return Deferral(raw)


def test_decisions_take_the_human_in_the_loop_middlewares_shape():
    assert decision_for(resource()) == {"type": "approve"}
    edited = resource(
        action={"tool": "billing.refund", "args": {"invoice": "INV-1", "amount": 30}},
        decision={"outcome": "approved", "decided_by": ["rita"], "edited": True,
                  "original_action_digest": "sha256:00"},
    )  # fmt: skip
    assert decision_for(edited, "refund") == {
        "type": "edit",
        "edited_action": {"name": "refund", "args": {"invoice": "INV-1", "amount": 30}},
    }
    rejected = resource(
        status="rejected",
        decision={"outcome": "rejected", "reason": "Wrong invoice", "decided_by": ["rita"]},
    )
    assert decision_for(rejected) == {
        "type": "reject",
        "message": "Countersign: billing.refund was rejected by rita: Wrong invoice. "
        "It did not run.",
    }
    expired = resource(status="expired", decision={"outcome": "expired", "decided_by": []})
    assert decision_for(expired)["message"] == (
        "Countersign: billing.refund was expired. It did not run."
    )


def test_a_resume_for_a_deferral_id_is_one_decision(cs, svc, rita):
    d = cs.defer(tool="crm.note", args={"text": "hi"}, summary="Note")
    assert decide_now(svc, rita, d.id, "approve") == "approved"
    assert resume_command(cs, d.id).resume == {"decisions": [{"type": "approve"}]}


def test_keys_and_summaries_are_stable():
    assert stable_key("langgraph", "t-1", "call_1") == stable_key("langgraph", "t-1", "call_1")
    assert stable_key("langgraph", "t-1", "call_1") != stable_key("langgraph", "t-1", "call_2")
    assert stable_key("a", "bc") != stable_key("ab", "c")
    args = {"invoice": "INV-1", "amount": 40}
    assert summary_for("refund", args, "Refund {amount} on {invoice}") == "Refund 40 on INV-1"
    assert summary_for("refund", args, {"refund": lambda t, a: f"{t}!"}) == "refund!"
    # A template that does not fit the call says what the call is instead of failing.
    assert summary_for("refund", args, "Refund {currency}") == (
        'refund {"amount": 40, "invoice": "INV-1"}'
    )
    assert len(summary_for("note", {"text": "x" * 600}, None)) == 500


def test_the_decisions_drive_langchains_human_in_the_loop_middleware_edits_included():
    ran = []

    def refund(invoice: str, amount: int) -> dict:
        """Refund."""
        ran.append(amount)
        return {"refunded": amount}

    class ScriptedChat(GenericFakeChatModel):
        def bind_tools(self, tools, **options):
            return self

    edited = resource(
        action={"tool": "billing.refund", "args": {"invoice": "INV-1", "amount": 30}},
        decision={"outcome": "approved", "decided_by": ["rita"], "edited": True},
    )
    rejected = resource(
        status="rejected",
        decision={"outcome": "rejected", "reason": "Wrong invoice", "decided_by": ["rita"]},
    )
    for thread, deferral in (("edited", edited), ("rejected", rejected)):
        call = {"name": "refund", "args": {"invoice": "INV-1", "amount": 40}, "id": "call_1"}
        model = ScriptedChat(messages=iter([AIMessage("", tool_calls=[call]), AIMessage("ok")]))
        agent = create_agent(
            model,
            tools=[refund],
            middleware=[HumanInTheLoopMiddleware(interrupt_on={"refund": True})],
            checkpointer=InMemorySaver(),
        )
        config = {"configurable": {"thread_id": thread}}
        assert agent.invoke({"messages": [HumanMessage("refund")]}, config)["__interrupt__"]
        decision = decision_for(deferral, "refund")
        answered = agent.invoke(Command(resume={"decisions": [decision]}), config)
        said = answered["messages"][-2].content
        if thread == "edited":
            assert ran == [30] and '{"refunded": 30}' in said
        else:
            assert ran == [30] and "Wrong invoice" in said
