"""The client's gate and decorator run an action only with a valid approval of exactly it,
against a real Countersign (gunicorn); and, without a server, the checks
and the call binding they rely on."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from countersign_client import (
    ActionMismatch,
    AgentKilled,
    AlreadyExecuted,
    ApprovalLapsed,
    ApprovalTimeout,
    Cancelled,
    Conflict,
    Countersign,
    Deferral,
    Expired,
    Killed,
    NotApproved,
    Rejected,
    RetryPolicy,
    action_digest,
    ensure_runnable,
)
from countersign_client.approval import CallShape
from sqlalchemy import update

from review.agents.killswitch import Actor, kill, revive
from review.models import Deferral as DeferralRow
from review.models import utcnow
from review.reviewing.expiry import expire_due
from tests.client_support import decide_now, deferral_ids, next_deferral
from tests.helpers import reviewer, wait_for

pytest_plugins = ["tests.client_server"]

QUICK = RetryPolicy(first_delay=0.05, max_delay=0.2, poll_max_delay=0.2)
NOTE = {"customer": "C-88319", "text": "refund is on its way"}


@pytest.fixture
def cs(countersign_server, make_agent):
    registered = make_agent("billing-bot")
    client = Countersign(
        countersign_server.base_url,
        agent=registered.slug,
        secret=registered.secret,
        on_behalf_of={"id": "alice@example.com", "display_name": "Alice"},
        retry=QUICK,
    )
    yield client
    client.close()


@pytest.fixture
def rita(svc):
    return reviewer(svc, "rita")


@pytest.fixture
def background():
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield pool


def gated(cs: Countersign, ran: list, **options):
    """Run crm.note through the gate; what the body saw goes into `ran`."""
    with cs.gate(
        tool="crm.note", args=dict(NOTE), summary="Note on C-88319", timeout=30, **options
    ) as approved:
        ran.append(approved.args)
        approved.result = {"note": "N-1"}
    return approved


# --- with a real Countersign ---------------------------------------------------------------


def test_it_runs_the_body_once_approved_and_the_execution_is_on_the_deferral(
    cs, svc, rita, background
):
    ran: list = []
    gate = background.submit(gated, cs, ran)
    d_id = next_deferral(svc)
    assert not ran  # nothing runs while it waits
    assert decide_now(svc, rita, d_id, "approve") == "approved"
    approved = gate.result(timeout=30)
    assert ran == [NOTE]
    read = cs.get(d_id)
    assert read.status == "approved" and approved.id == d_id
    assert read.execution["outcome"] == "succeeded"
    assert read.execution["result"] == {"note": "N-1"}
    # The client computes the service's own digest of the action.
    assert read.action_digest == action_digest("crm.note", NOTE)
    assert read.on_behalf_of == {
        "id": "alice@example.com",
        "display_name": "Alice",
        "verified": False,  # claimed by the agent, no token (PROTOCOL.md section 17)
        "issuer": None,
        "groups": [],
    }


def test_the_decorator_runs_with_the_calls_args_and_reports_what_it_returned(
    cs, svc, rita, background
):
    calls = []

    @cs.requires_approval(
        tool="billing.refund", summary="Refund {amount} on {invoice}", timeout=30,
        labels=lambda args: {"invoice": args["invoice"]},
    )  # fmt: skip
    def refund(invoice: str, amount: int, currency: str = "EUR") -> dict:
        calls.append((invoice, amount, currency))
        return {"refund": "R-1", "amount": amount}

    call = background.submit(refund, "INV-1", amount=12)
    d_id = next_deferral(svc)
    pending = cs.get(d_id)
    assert pending.summary == "Refund 12 on INV-1"
    assert pending.action == {
        "tool": "billing.refund",
        "args": {"invoice": "INV-1", "amount": 12, "currency": "EUR"},
    }
    assert pending.labels == {"invoice": "INV-1"}
    decide_now(svc, rita, d_id, "approve")
    assert call.result(timeout=30) == {"refund": "R-1", "amount": 12}
    assert calls == [("INV-1", 12, "EUR")]
    assert cs.get(d_id).execution["result"] == {"refund": "R-1", "amount": 12}


def test_a_body_that_raises_is_reported_failed_and_its_exception_goes_on(cs, svc, rita, background):
    def failing():
        with cs.gate(tool="crm.note", args=NOTE, summary="Note", timeout=30):
            raise ValueError("the CRM said no")

    gate = background.submit(failing)
    decide_now(svc, rita, next_deferral(svc), "approve")
    with pytest.raises(ValueError, match="the CRM said no"):
        gate.result(timeout=30)
    (d_id,) = deferral_ids(svc)
    execution = cs.get(d_id).execution
    assert execution["outcome"] == "failed"
    assert execution["result"] == "ValueError: the CRM said no"


def end_by_rejection(svc, rita, cs, d_id):
    decide_now(svc, rita, d_id, "reject", "not this customer")


def end_by_cancellation(svc, rita, cs, d_id):
    cs.cancel(d_id, reason="the customer withdrew")


def end_by_expiry(svc, rita, cs, d_id):
    assert expire_due(svc, now=utcnow() + timedelta(seconds=61)) == 1


def end_by_kill_switch(svc, rita, cs, d_id):
    kill(svc, "billing-bot", Actor("user", "olivia"), "it went rogue")


@pytest.mark.parametrize(
    ("end", "raised", "reason"),
    [
        (end_by_rejection, Rejected, "not this customer"),
        (end_by_cancellation, Cancelled, "the customer withdrew"),
        (end_by_expiry, Expired, "expired before a decision"),
        (end_by_kill_switch, Killed, "it went rogue"),
    ],
)
def test_an_ending_other_than_approval_raises_before_the_body(
    cs, svc, rita, background, end, raised, reason
):
    ran: list = []
    gate = background.submit(gated, cs, ran, expires_in=60)
    d_id = next_deferral(svc)
    end(svc, rita, cs, d_id)
    with pytest.raises(raised) as caught:
        gate.result(timeout=30)
    assert ran == []
    assert caught.value.deferral.id == d_id
    assert caught.value.deferral.status == caught.value.deferral.decision.outcome
    assert caught.value.reason == reason
    assert cs.get(d_id).execution is None


def test_a_killed_agent_is_refused_before_anything_is_deferred(cs, svc, background):
    kill(svc, "billing-bot", Actor("user", "olivia"), "stop everything")
    # The server's status copy hears of a flip made here by pub/sub, within its in-step
    # bound (review/agents/status_cache.py): wait for it rather than race it.
    wait_for(lambda: cs.status().killed, timeout=5, message="the status never said killed")
    assert cs.status().reason == "stop everything"
    ran: list = []
    with pytest.raises(AgentKilled) as caught:
        gated(cs, ran)
    assert isinstance(caught.value, Killed) and caught.value.status == 423
    assert ran == [] and deferral_ids(svc) == set()
    revive(svc, "billing-bot", Actor("user", "olivia"), "fixed")
    wait_for(lambda: cs.status().state == "active", timeout=5, message="never active again")
    assert cs.status().changed_by == "olivia"


def test_an_approval_that_does_not_match_its_digest_runs_nothing(cs, svc, rita, background):
    ran: list = []
    gate = background.submit(gated, cs, ran)
    d_id = next_deferral(svc)
    swapped = {"tool": "crm.note", "args": {**NOTE, "customer": "C-1"}}
    with svc.db.write() as session:  # someone with the database's keys swaps the action
        session.execute(update(DeferralRow).where(DeferralRow.id == d_id).values(action=swapped))
    decide_now(svc, rita, d_id, "approve")
    with pytest.raises(ActionMismatch, match="does not match its digest"):
        gate.result(timeout=30)
    assert ran == [] and cs.get(d_id).execution is None


def test_a_gate_that_waits_in_vain_withdraws_the_deferral(cs, svc):
    gate = cs.gate(tool="crm.note", args=NOTE, summary="Note", timeout=2)
    with pytest.raises(ApprovalTimeout) as caught, gate:
        raise AssertionError("the body must not run")
    withdrawn = cs.get(caught.value.deferral.id)
    assert withdrawn.status == "cancelled"
    assert "stopped waiting" in withdrawn.decision.reason
    with (
        pytest.raises(ApprovalTimeout) as caught,
        cs.gate(tool="crm.note", args=NOTE, summary="Note", timeout=1, cancel_on_timeout=False),
    ):
        raise AssertionError("the body must not run")
    assert cs.get(caught.value.deferral.id).status == "pending"


def test_a_second_report_is_refused_and_a_known_deferral_is_not_run_again(
    cs, svc, rita, background
):
    ran: list = []
    gate = background.submit(gated, cs, ran, idempotency_key="note-C-88319")
    decide_now(svc, rita, next_deferral(svc), "approve")
    approved = gate.result(timeout=30)
    with pytest.raises(Conflict) as caught:
        cs.report_execution(approved, "succeeded", {"again": True})
    assert caught.value.code == "invalid_state"
    # The same idempotency key answers the same deferral, which has run: nothing runs.
    with pytest.raises(AlreadyExecuted):
        gated(cs, ran, idempotency_key="note-C-88319")
    assert ran == [NOTE]


# --- the checks, without a server ----------------------------------------------------------


def resource(status="approved", action=None, **decision):
    action = action or {"tool": "crm.note", "args": NOTE}
    now = datetime.now(UTC)
    decided = {
        "outcome": status,
        "reason": None,
        "decided_by": ["rita"],
        "decided_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "valid_until": (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **decision,
    }
    return Deferral(
        {
            "id": "dfr_1",
            "status": status,
            "action": action,
            "action_digest": action_digest(action["tool"], action["args"]),
            "decision": decided if status not in ("pending", "in_review") else None,
            "execution": None,
        }
    )


def test_it_checks_everything_an_approval_must_be_before_running():
    assert ensure_runnable(resource(), "crm.note", NOTE).args == NOTE
    with pytest.raises(NotApproved, match="still in_review"):
        ensure_runnable(resource("in_review"), "crm.note", NOTE)
    with pytest.raises(Rejected) as caught:
        ensure_runnable(resource("rejected", reason="no"), "crm.note", NOTE)
    assert caught.value.reason == "no"
    with pytest.raises(ActionMismatch, match="another action"):
        ensure_runnable(resource(), "crm.note", {**NOTE, "text": "other"})
    with pytest.raises(ActionMismatch, match="approves 'crm.note'"):
        ensure_runnable(resource(), "crm.delete", NOTE)
    with pytest.raises(ApprovalLapsed):
        ensure_runnable(resource(valid_until="2020-01-01T00:00:00Z"), "crm.note", NOTE)
    with pytest.raises(ApprovalLapsed):
        ensure_runnable(resource(valid_until=None), "crm.note", NOTE)
    executed = resource()
    executed.raw["execution"] = {"outcome": "succeeded", "result": None, "reported_at": "x"}
    with pytest.raises(AlreadyExecuted):
        ensure_runnable(executed, "crm.note", NOTE)


def test_an_edited_approval_runs_the_edited_args_when_it_was_this_actions():
    edited_args = {**NOTE, "text": "refund sent"}
    edited = resource(
        action={"tool": "crm.note", "args": edited_args},
        edited=True,
        original_action_digest=action_digest("crm.note", NOTE),
    )
    assert ensure_runnable(edited, "crm.note", NOTE).args == edited_args
    with pytest.raises(ActionMismatch):
        ensure_runnable(edited, "crm.note", {**NOTE, "customer": "C-2"})


def test_the_decorator_checks_its_summary_and_arguments_when_it_is_applied():
    def refund(self, invoice: str, amount: int, *, note: str = "", **extra) -> None: ...

    with pytest.raises(TypeError, match="summary names {total}"):
        CallShape(refund, "Refund {total}")
    shape = CallShape(refund, "Refund {amount} on {invoice}")
    args, kept = shape.bind(("the instance", "INV-1", 5), {"tag": "x"})
    assert args == {"invoice": "INV-1", "amount": 5, "note": "", "extra": {"tag": "x"}}
    assert kept == {"self": "the instance"} and shape.summary_of(args) == "Refund 5 on INV-1"
    approved = resource(action={"tool": "t", "args": {**args, "amount": 4}})
    positional, keywords = shape.arguments(
        ensure_runnable(approved, "t", approved.action["args"]), kept
    )
    assert positional == ["the instance", "INV-1", 4] and keywords == {"note": "", "tag": "x"}
    unfit = resource(action={"tool": "t", "args": {"invoice": "INV-1", "amount": 4, "x": 1}})
    with pytest.raises(ActionMismatch, match="do not fit"):
        shape.arguments(ensure_runnable(unfit, "t", unfit.action["args"]), {})
    with pytest.raises(TypeError, match="must be JSON"):
        shape.bind((None, "INV-1", object()), {})
