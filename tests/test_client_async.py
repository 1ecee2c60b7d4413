"""AsyncCountersign does what Countersign does, awaited: against a real Countersign
(gunicorn), the gate, the decorator on coroutines, endings, a lost answer
and a restart while waiting."""

from __future__ import annotations

import asyncio
import time

import pytest
from countersign_client import (
    ApprovalTimeout,
    AsyncCountersign,
    Killed,
    Rejected,
    RetryPolicy,
    action_digest,
)

from review import redis_keys
from review.agents.killswitch import Actor, kill
from tests.client_support import decide_now, deferral_ids, next_deferral
from tests.helpers import reviewer, wait_for

pytest_plugins = ["tests.client_server"]

QUICK = RetryPolicy(first_delay=0.05, max_delay=0.2, poll_max_delay=0.2)
NOTE = {"customer": "C-88319", "text": "refund is on its way"}


def client(base_url: str, agent, **options) -> AsyncCountersign:
    options.setdefault("retry", QUICK)
    return AsyncCountersign(
        base_url, agent=agent.slug, secret=agent.secret, on_behalf_of="alice", **options
    )


async def approve_the_next(svc, holder, verdict="approve", reason=None) -> str:
    d_id = await asyncio.to_thread(next_deferral, svc)
    await asyncio.to_thread(decide_now, svc, holder, d_id, verdict, reason)
    return d_id


def test_the_async_gate_runs_the_body_once_approved_and_reports_it(countersign_server, agent, svc):
    rita = reviewer(svc)
    ran = []

    async def scenario():
        async with client(countersign_server.base_url, agent) as cs:

            async def gated():
                async with cs.gate(
                    tool="crm.note", args=NOTE, summary="Note", timeout=30
                ) as approved:
                    ran.append(approved.args)
                    approved.result = {"note": "N-1"}

            _, d_id = await asyncio.gather(gated(), approve_the_next(svc, rita))
            return await cs.get(d_id)

    read = asyncio.run(scenario())
    assert ran == [NOTE]
    assert read.execution["outcome"] == "succeeded" and read.execution["result"] == {"note": "N-1"}
    assert read.action_digest == action_digest("crm.note", NOTE)


def test_the_async_decorator_runs_coroutines_with_the_calls_args(countersign_server, agent, svc):
    rita = reviewer(svc)
    calls = []

    async def scenario():
        async with client(countersign_server.base_url, agent) as cs:

            @cs.requires_approval(tool="billing.refund", summary="Refund {amount} on {invoice}")
            async def refund(invoice: str, amount: int) -> dict:
                calls.append((invoice, amount))
                return {"refund": "R-1"}

            with pytest.raises(TypeError, match="not async"):
                cs.requires_approval(tool="t", summary="s")(lambda: None)
            returned, d_id = await asyncio.gather(
                refund("INV-1", amount=12), approve_the_next(svc, rita)
            )
            return returned, await cs.get(d_id)

    returned, read = asyncio.run(scenario())
    assert returned == {"refund": "R-1"} and calls == [("INV-1", 12)]
    assert read.summary == "Refund 12 on INV-1" and read.execution["result"] == {"refund": "R-1"}


@pytest.mark.parametrize("ending", ["rejected", "killed"])
def test_an_async_gate_raises_the_ending_before_the_body(countersign_server, agent, svc, ending):
    rita = reviewer(svc)

    async def end():
        if ending == "rejected":
            await approve_the_next(svc, rita, "reject", "not this customer")
        else:
            await asyncio.to_thread(next_deferral, svc)
            await asyncio.to_thread(kill, svc, agent.slug, Actor("user", "olivia"), "rogue")

    async def scenario():
        async with client(countersign_server.base_url, agent) as cs:

            async def gated():
                async with cs.gate(tool="crm.note", args=NOTE, summary="Note", timeout=30):
                    raise AssertionError("the body must not run")

            await asyncio.gather(gated(), end())

    with pytest.raises(Rejected if ending == "rejected" else Killed) as caught:
        asyncio.run(scenario())
    assert caught.value.deferral.status == ending
    assert caught.value.reason == ("not this customer" if ending == "rejected" else "rogue")


def test_an_async_defer_whose_answer_was_lost_is_the_same_deferral(
    countersign_server, agent, svc, dropping_proxy
):
    proxy = dropping_proxy(countersign_server.port)

    async def scenario():
        async with client(proxy.url, agent) as cs:
            return await cs.defer(tool="crm.note", args=NOTE, summary="Note")

    d = asyncio.run(scenario())
    assert proxy.dropped == 1 and deferral_ids(svc) == {d.id}


def test_async_wait_outlives_a_restart_of_the_service(countersign_server, agent, svc, redis_client):
    async def scenario():
        async with client(countersign_server.base_url, agent, retry=RetryPolicy()) as cs:
            d = await cs.defer(tool="crm.note", args=NOTE, summary="Note")
            waiting = asyncio.create_task(cs.wait(d.id, timeout=90))
            places = redis_keys.long_polls(agent.slug)
            await asyncio.to_thread(wait_for, lambda: redis_client.zcard(places) == 1)
            await asyncio.to_thread(countersign_server.stop_web)
            await asyncio.sleep(2)
            assert not waiting.done()
            await asyncio.to_thread(countersign_server.start_web)
            await asyncio.to_thread(decide_now, svc, reviewer(svc), d.id, "approve")
            return await asyncio.wait_for(waiting, 60)

    assert asyncio.run(scenario()).status == "approved"


def test_an_async_gate_that_waits_in_vain_withdraws_the_deferral(countersign_server, agent):
    async def scenario():
        async with client(countersign_server.base_url, agent) as cs:
            started = time.monotonic()
            with pytest.raises(ApprovalTimeout) as caught:
                async with cs.gate(tool="crm.note", args=NOTE, summary="Note", timeout=2):
                    raise AssertionError("the body must not run")
            assert time.monotonic() - started < 10
            assert (await cs.status()).state == "active"
            return await cs.get(caught.value.deferral.id)

    assert asyncio.run(scenario()).status == "cancelled"
