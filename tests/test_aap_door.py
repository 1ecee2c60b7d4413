"""The AAP door (PROTOCOL.md section 12), driven by the `agentapprovalprotocol` package's own
Gate, Client and Receiver against the app served by gunicorn (and a real worker for the
notifications), while reviewers decide through the domain as the pages do."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from agentapprovalprotocol import (
    Allow,
    Call,
    Client,
    ConflictError,
    CredentialRefused,
    Deny,
    Gate,
    Pending,
    Receiver,
    WebhookVerificationFailed,
)
from agentapprovalprotocol import NotFound as AapNotFound
from sqlalchemy import select

from review.agents import killswitch
from review.audit.verify import verify_chain
from review.doors.aap.tables import AapInstance, AapRequest, AapToken
from review.doors.aap.tokens import issue_agent_token
from review.doors.aap.wire import deferral_id
from review.models import AuditEvent, Deferral, Execution, OutboxEvent
from review.reviewing.claims import claim_batch
from review.reviewing.decisions import decide
from review.reviewing.expiry import expire_due
from tests.helpers import Browser, free_port, reviewer, serve_in_background

ROOT = Path(__file__).resolve().parent.parent
NOTE = {"tool": "notes.write", "arguments": {"note": "hello", "weight": 1.50}, "timeout": "10m"}


# --- the app in its own processes -------------------------------------------------------


def _until(condition: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.05)


class Processes:
    """gunicorn serving app:app (and, when asked, a worker) on the test's database and Redis."""

    def __init__(self, settings_overrides: dict, folder: Path):
        self.overrides, self.folder = settings_overrides, folder
        self.running: list[tuple[subprocess.Popen, object]] = []
        self.base = ""

    def env(self, **variables: str) -> dict[str, str]:
        o = self.overrides
        return {
            **os.environ,
            "DATABASE_URL": o["database_url"],
            "REDIS_URL": o["redis_url"],
            "COUNTERSIGN_INSTANCE_DIR": o["instance_dir"],
            "SECRET_KEY": o["secret_key"],
            "COUNTERSIGN_AGENT_RATE": "0",
            "COUNTERSIGN_ALLOW_PRIVATE_CALLBACKS": "1",
            **variables,
        }

    def _start(self, args: list[str], name: str, **variables: str) -> None:
        log = (self.folder / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", *args], cwd=ROOT, env=self.env(**variables),
            stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
        self.running.append((proc, log))

    def serve(self, **variables: str) -> str:
        port = free_port()
        self._start(
            ["gunicorn", "app:app", "-b", f"127.0.0.1:{port}", "--workers", "1",
             "--worker-class", "gthread", "--threads", "12", "--graceful-timeout", "5"],
            "gunicorn", **variables,
        )  # fmt: skip
        self.base = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            try:
                return httpx.get(self.base + "/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        _until(answers, 30, "gunicorn answering")
        return self.base

    def work(self, **variables: str) -> None:
        self._start(["flask", "--app", "app", "worker"], "worker", **variables)

    def stop(self) -> None:
        for proc, log in reversed(self.running):
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


@pytest.fixture
def processes(settings_overrides, tmp_path) -> Iterator[Processes]:
    running = Processes(settings_overrides, tmp_path)
    yield running
    running.stop()


@pytest.fixture
def token(svc, agent) -> str:
    return issue_agent_token(svc, agent.slug)


@pytest.fixture
def rita(svc):
    return reviewer(svc, "rita")


def aap_url(base: str) -> str:
    return base + "/aap"


@pytest.fixture
def connect() -> Iterator[Callable[[str, str], Client]]:
    """The package's Client for (base URL, token), closed after the test."""
    made: list[Client] = []

    def client(base: str, bearer: str) -> Client:
        made.append(Client(aap_url(base), bearer))
        return made[-1]

    yield client
    for client in made:
        client.close()


def gate_in_thread(gate: Gate, call: Call, run: Callable[[], object] | None = None):
    """Check (and guard) the call on a thread, as an agent would; its verdict when done."""
    outcome: dict[str, object] = {}

    def check() -> None:
        with gate.guard(call, can_pause=False) as verdict:
            outcome["verdict"] = verdict
            if verdict and run is not None:
                outcome["ran"] = run()

    thread = threading.Thread(target=check)
    thread.start()
    return thread, outcome


def waiting_deferral(svc) -> str:
    """The id of the AAP request's deferral once it is waiting for a reviewer."""

    def find() -> str | None:
        with svc.db.read() as session:
            return session.scalar(
                select(Deferral.id)
                .join(AapRequest, AapRequest.deferral_id == Deferral.id)
                .where(Deferral.status == "pending")
            )

    return _until(find, 20, "the AAP request reaching the queue")


def decide_as(svc, holder, d_id: str, verdict: str, reason: str | None = None) -> None:
    assert d_id in claim_batch(svc, holder)
    decided = decide(svc, holder, d_id, verdict, reason)
    assert decided.status in ("approved", "rejected"), decided.message


def events_of(svc, d_id: str) -> list[str]:
    with svc.db.read() as session:
        return list(
            session.scalars(
                select(AuditEvent.event_type)
                .where(AuditEvent.deferral_id == d_id)
                .order_by(AuditEvent.seq)
            )
        )


def chain_is_whole(svc) -> bool:
    with svc.db.read() as session:
        return verify_chain(session).ok


# --- allow, deny, replay, expiry ------------------------------------------------------


def test_the_gate_runs_a_call_a_reviewer_approves_once_and_refuses_its_replay(
    app, svc, agent, token, rita, processes, connect
):
    base = processes.serve()
    gate = Gate(connect(base, token))
    call = Call(key="run-1:call-1", tool="notes.write", arguments={"note": "hello"})
    thread, outcome = gate_in_thread(gate, call, run=lambda: "written")
    d_id = waiting_deferral(svc)
    # A deferral like any other: in the queue and on the agent's page, for people.
    browser = Browser(app.test_client(), "rita")
    assert "AAP request: notes.write" in browser.get("/queue").get_data(as_text=True)
    assert d_id in browser.get(f"/agents/{agent.slug}").get_data(as_text=True)
    decide_as(svc, rita, d_id, "approve")
    thread.join(30)
    assert isinstance(outcome["verdict"], Allow) and outcome["ran"] == "written"
    with svc.db.read() as session:
        execution = session.get(Execution, d_id)
        assert (execution.outcome, execution.action_digest) == (
            "succeeded",
            session.get(Deferral, d_id).action_digest,
        )
        assert session.get(AapRequest, d_id).consumed_at is not None
    # The same call seen again (a resumed run) is refused: its approval was used.
    again = gate.check(call)
    assert isinstance(again, Deny) and again.status == "consumed"
    assert events_of(svc, d_id) == [
        "deferral.received",
        "deferral.evaluated",
        "deferral.claimed",
        "deferral.approved",
        "deferral.consumed",
        "execution.reported",
    ]
    assert chain_is_whole(svc)


def test_a_rejection_reaches_the_gate_as_a_denial_with_the_reviewers_note(
    svc, token, rita, processes, connect
):
    base = processes.serve()
    gate = Gate(connect(base, token))
    thread, outcome = gate_in_thread(
        gate, Call(key="run-2:call-1", tool="notes.write", arguments={"note": "x"})
    )
    decide_as(svc, rita, waiting_deferral(svc), "reject", "not on a Friday")
    thread.join(30)
    verdict = outcome["verdict"]
    assert isinstance(verdict, Deny) and verdict.status == "denied"
    assert "not on a Friday" in verdict.reason


def test_a_request_nobody_decides_in_time_expires_and_the_gate_denies(
    svc, token, processes, connect
):
    base = processes.serve()
    gate = Gate(connect(base, token), timeout="2s")
    thread, outcome = gate_in_thread(
        gate, Call(key="run-3:call-1", tool="notes.write", arguments={"note": "x"})
    )
    d_id = waiting_deferral(svc)
    time.sleep(2.2)
    assert expire_due(svc) == 1  # the worker's tick, run here
    thread.join(30)
    verdict = outcome["verdict"]
    assert isinstance(verdict, Deny) and verdict.status == "expired"
    with svc.db.read() as session:
        assert session.get(Deferral, d_id).status == "expired"


def test_the_kill_switch_denies_a_waiting_request_with_its_reason(
    svc, agent, token, processes, connect
):
    base = processes.serve()
    gate = Gate(connect(base, token))
    thread, outcome = gate_in_thread(
        gate, Call(key="run-4:call-1", tool="notes.write", arguments={"note": "x"})
    )
    waiting_deferral(svc)
    killswitch.kill(svc, agent.slug, killswitch.Actor("user", "olivia"), "runaway loop")
    thread.join(30)
    verdict = outcome["verdict"]
    assert isinstance(verdict, Deny) and verdict.status == "denied"
    assert "runaway loop" in verdict.reason
    # A stopped agent's credential asks for nothing more.
    refused = Gate(connect(base, token)).check(
        Call(key="run-4:call-2", tool="notes.write", arguments={"note": "y"})
    )
    assert isinstance(refused, Deny) and "refused this agent's credential" in refused.reason


def test_an_approval_not_started_in_time_cannot_be_consumed(
    make_app, token, rita, processes, connect
):
    base = processes.serve()
    client = connect(base, token)
    made = client.create(NOTE, "late-1")
    brief = make_app(approval_ttl=1).extensions["countersign"]  # approvals valid for 1 s
    decide_as(brief, rita, deferral_id(made.id), "approve")
    time.sleep(1.2)
    with pytest.raises(ConflictError) as refused:
        client.consume(made.id, "attempt-1")
    assert refused.value.code == "approval_expired"
    assert client.get(made.id).consumption is None


def test_an_outcome_after_valid_until_is_accepted_when_the_run_began_before_it(
    make_app, svc, token, rita, processes, connect
):
    base = processes.serve()
    gate = Gate(connect(base, token))
    call = Call(key="run-5:call-1", tool="notes.write", arguments={"note": "slow"})
    thread, outcome = gate_in_thread(gate, call, run=lambda: time.sleep(3) or "done")
    d_id = waiting_deferral(svc)
    brief = make_app(approval_ttl=2).extensions["countersign"]  # approvals valid for 2 s
    decide_as(brief, rita, d_id, "approve")
    thread.join(30)
    assert isinstance(outcome["verdict"], Allow)
    with svc.db.read() as session:
        deferral, execution = session.get(Deferral, d_id), session.get(Execution, d_id)
        assert execution is not None and execution.outcome == "succeeded"
        assert execution.reported_at > deferral.valid_until  # late, and still accepted
    assert "execution.violation" not in events_of(svc, d_id)


def test_consume_is_single_use_and_an_outcome_needs_it(svc, token, rita, processes, connect):
    base = processes.serve()
    client = connect(base, token)
    made = client.create(NOTE, "once-1")
    with pytest.raises(ConflictError) as early:
        client.consume(made.id, "attempt-1")
    assert early.value.code == "not_approved"
    decide_as(svc, rita, deferral_id(made.id), "approve")
    with pytest.raises(ConflictError) as unused:
        client.report_outcome(made.id, "succeeded")
    assert unused.value.code == "not_consumed"
    first = client.consume(made.id, "attempt-1")
    assert client.consume(made.id, "attempt-1").consumption == first.consumption  # a retry
    with pytest.raises(ConflictError) as second:
        client.consume(made.id, "attempt-2")
    assert second.value.code == "already_consumed"
    reported = client.report_outcome(made.id, "failed", "disk full")
    assert reported.consumption.outcome.status == "failed"
    assert reported.consumption.outcome.note == "disk full"
    assert client.report_outcome(made.id, "failed", "disk full") == client.get(made.id)
    with pytest.raises(ConflictError) as changed:
        client.report_outcome(made.id, "succeeded")
    assert changed.value.code == "outcome_conflict"


# --- the wire -------------------------------------------------------------------------


def test_the_request_echoes_the_submission_exactly_and_keys_make_retries(svc, token, processes):
    base = processes.serve()
    url = aap_url(base) + "/v1/requests"
    raw = b'{"tool":"notes.write","timeout":"10m","arguments":{"weight":1.50,"n":1e2},' \
          b'"context":{"call_id":"c1"},"agent_reasoning":"asked to"}'  # fmt: skip
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    first = httpx.post(url, content=raw, headers={**headers, "Idempotency-Key": "k-1"})
    assert first.status_code == 201, first.text
    assert first.text.endswith(raw[1:].decode())  # the submission's own bytes, echoed
    assert first.headers["X-Request-ID"]
    same = httpx.post(url, content=raw, headers={**headers, "Idempotency-Key": "k-1"})
    assert same.status_code == 200 and same.json()["id"] == first.json()["id"]
    spaced = json.dumps(json.loads(raw), indent=2).encode()  # the same fields, respaced
    assert (
        httpx.post(url, content=spaced, headers={**headers, "Idempotency-Key": "k-1"}).json()["id"]
        == first.json()["id"]
    )
    other = json.dumps({**json.loads(raw), "context": {"call_id": "c2"}}).encode()
    conflict = httpx.post(url, content=other, headers={**headers, "Idempotency-Key": "k-1"})
    assert conflict.status_code == 409
    error = conflict.json()["error"]
    assert (error["type"], error["code"]) == ("conflict", "idempotency_conflict")
    assert error["request_id"] == conflict.headers["X-Request-ID"]
    missing = httpx.post(url, content=raw, headers=headers)
    assert missing.status_code == 400 and missing.json()["error"]["code"] == (
        "missing_idempotency_key"
    )
    unknown = httpx.post(
        url,
        content=json.dumps({**NOTE, "approve": True}),
        headers={**headers, "Idempotency-Key": "k-2"},
    )
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "approve"
    with svc.db.read() as session:
        d = session.get(Deferral, deferral_id(first.json()["id"]))
        assert (d.tool, d.action["args"], d.rationale) == (
            "notes.write",
            {"weight": 1.5, "n": 100.0},
            "asked to",
        )
        assert d.labels["via"] == "aap" and d.principal_id == f"system:aap:{d.agent.slug}"


def test_wait_holds_a_read_until_the_decision_or_the_time(svc, token, rita, processes, connect):
    base = processes.serve()
    client = connect(base, token)
    made = client.create(NOTE, "wait-1")
    started = time.monotonic()
    assert client.get(made.id, wait=2).status == "pending"
    assert 1.9 <= time.monotonic() - started < 6
    timer = threading.Timer(1.0, decide_as, (svc, rita, deferral_id(made.id), "approve"))
    timer.start()
    started = time.monotonic()
    decided = client.get(made.id, wait=20)
    took = time.monotonic() - started
    timer.join()
    assert decided.status == "approved" and 0.9 <= took < 6, took
    too_long = httpx.get(
        f"{aap_url(base)}/v1/requests/{made.id}?wait=forever",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert too_long.status_code == 400 and too_long.json()["error"]["param"] == "wait"


def test_cancel_withdraws_a_pending_request_and_refuses_a_decided_one(
    svc, token, rita, processes, connect
):
    base = processes.serve()
    client = connect(base, token)
    made = client.create(NOTE, "cancel-1")
    assert client.cancel(made.id).status == "cancelled"
    assert client.cancel(made.id).status == "cancelled"  # again: the same request
    decided = client.create({**NOTE, "arguments": {"note": "keep"}}, "cancel-2")
    decide_as(svc, rita, deferral_id(decided.id), "approve")
    with pytest.raises(ConflictError) as late:
        client.cancel(decided.id)
    assert late.value.code == "already_terminal"


def test_tokens_see_only_their_own_requests_and_a_wrong_one_sees_nothing(
    svc, make_agent, token, processes, connect
):
    base = processes.serve()
    mine = connect(base, token).create(NOTE, "mine-1")
    other = make_agent("other-bot", owner="otto")
    theirs = connect(base, issue_agent_token(svc, other.slug))
    with pytest.raises(AapNotFound):
        theirs.get(mine.id)
    with pytest.raises(CredentialRefused):
        connect(base, "aap_not-a-token").get(mine.id)


# --- tokens ---------------------------------------------------------------------------


def test_a_new_token_is_printed_last_and_the_old_one_works_for_the_overlap(
    make_app, make_agent, runner
):
    agent = make_agent()
    first = runner.invoke(args=["agents", "aap-token", agent.slug])
    assert first.exit_code == 0, first.output
    old = first.output.strip().splitlines()[-1]
    second = runner.invoke(args=["agents", "aap-token", agent.slug])
    new = second.output.strip().splitlines()[-1]
    assert old.startswith("aap_") and new.startswith("aap_") and new != old
    client = runner.app.test_client()
    for token in (old, new):
        answer = client.post(
            "/aap/v1/requests",
            json=NOTE,
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": token[-8:]},
        )
        assert answer.status_code == 201, answer.get_data(as_text=True)
    svc = runner.app.extensions["countersign"]
    with svc.db.read() as session:
        hashes = set(session.scalars(select(AapToken.token_hash)))
    assert old not in hashes and new not in hashes  # kept hashed
    # With no overlap, the token before the newest stops at once.
    strict = make_app(secret_overlap=0)
    strict.test_cli_runner().invoke(args=["agents", "aap-token", agent.slug])
    answer = strict.test_client().get(
        "/aap/v1/requests/00000000-0000-0000-0000-000000000000",
        headers={"Authorization": f"Bearer {new}"},
    )
    assert answer.status_code == 401 and answer.get_json()["error"]["type"] == "authentication"
    assert runner.invoke(args=["agents", "aap-token", "nobody"]).exit_code != 0


# --- instances and request.resolved ---------------------------------------------------


class ServedReceiver:
    """The package's own Receiver, served over HTTP on a loop of its own thread."""

    def __init__(self, receiver: Receiver):
        self.receiver = receiver
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        served = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, answer = served.run(receiver.handle(dict(self.headers), body))
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/aap/events"
        serve_in_background(self.server)

    def run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self.receiver.client is not None:
            self.run(self.receiver.client.aclose())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def served_receiver() -> Iterator[tuple[ServedReceiver, list]]:
    woken: list = []
    served = ServedReceiver(Receiver(resumers={"test": lambda handle, req: woken.append(req)}))
    yield served, woken
    served.close()


def test_an_instance_registers_its_verified_receiver_and_hears_of_its_decisions(
    svc, agent, token, rita, processes, served_receiver, connect
):
    base = processes.serve()
    processes.work()
    served, woken = served_receiver
    provisioned = served.run(
        served.receiver.provision(
            provider_url=aap_url(base),
            provisioner_token=token,
            url=served.url,
            instance_name="laptop",
            idempotency_key="register-1",
        )
    )
    assert provisioned.instance_name == "laptop"
    # The registration retried with its key answers the same instance and credential.
    again = httpx.post(
        aap_url(base) + "/v1/instances",
        json={
            "instance_name": "laptop",
            "delivery": {
                "type": "webhook",
                "url": served.url,
                "registration_id": provisioned.registration_id,
                "signing_secret": provisioned.secret,
            },
        },
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "register-1"},
    )
    assert again.status_code == 200
    assert again.json()["credential"]["token"] == provisioned.token
    assert "signing_secret" not in again.text
    # An instance credential makes requests, paused until a decision wakes the run.
    gate = Gate(connect(base, provisioned.token), mode="async")
    call = Call(
        key="run-9:call-1",
        tool="notes.write",
        arguments={"note": "async"},
        resume={"framework": "test", "run": "9"},
    )
    pending = gate.check(call)
    assert isinstance(pending, Pending)
    d_id = deferral_id(pending.request_id)
    with svc.db.read() as session:
        d = session.get(Deferral, d_id)
        assert d.labels["aap_instance"] == "laptop"
    decide_as(svc, rita, d_id, "approve")
    _until(lambda: woken, 30, "the receiver waking the run")
    assert woken[0].id == pending.request_id and woken[0].status == "approved"
    allowed = gate.check(call)
    assert isinstance(allowed, Allow)
    allowed.report("succeeded")
    with svc.db.read() as session:
        (event,) = session.scalars(select(OutboxEvent).where(OutboxEvent.deferral_id == d_id))
        assert (event.event_type, event.status) == ("request.resolved", "delivered")
        body = json.loads(event.body)
        assert body == {
            "id": event.id,
            "type": "request.resolved",
            "instance_id": provisioned.instance_id,
            "request_id": pending.request_id,
            "created_at": body["created_at"],
        }
    assert "callback.attempted" in events_of(svc, d_id)
    assert chain_is_whole(svc)


def test_a_receiver_that_cannot_answer_the_challenge_registers_nothing(
    svc, token, processes, receiver_factory
):
    base = processes.serve()
    plain = receiver_factory((200, {}, 0))  # answers 200 "ok", not the challenge
    served = ServedReceiver(Receiver(resumers={}))
    try:
        with pytest.raises(WebhookVerificationFailed):
            served.run(
                served.receiver.provision(
                    provider_url=aap_url(base), provisioner_token=token, url=plain.url
                )
            )
    finally:
        served.close()
    assert len(plain.requests) == 1  # one signed attempt
    headers, body, _ = plain.requests[0]
    assert json.loads(body)["type"] == "webhook.verification"
    assert {"webhook-id", "webhook-timestamp", "webhook-signature"} <= {k.lower() for k in headers}
    with svc.db.read() as session:
        assert session.scalars(select(AapInstance)).all() == []


# --- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "headers", "status", "code", "param"),
    [
        (b'{"tool": "x",', {}, 400, "malformed_json", None),
        (b'{"tool": "x", "tool": "y", "arguments": {}, "timeout": "1m"}', {}, 400,
         "invalid_request", None),
        (json.dumps({**NOTE, "arguments": [1]}).encode(), {}, 400, "invalid_request",
         "arguments"),
        (json.dumps({**NOTE, "timeout": "0s"}).encode(), {}, 400, "invalid_request", "timeout"),
        (json.dumps({**NOTE, "timeout": "2d"}).encode(), {}, 400, "invalid_request", "timeout"),
        (json.dumps({**NOTE, "tool": ""}).encode(), {}, 400, "invalid_request", "tool"),
        (json.dumps({**NOTE, "server": None}).encode(), {}, 400, "invalid_request", "server"),
        (json.dumps({**NOTE, "tool": "t" * 201}).encode(), {}, 400, "invalid_request", "tool"),
        (json.dumps({**NOTE, "context": {"a": "\u0000"}}).encode(), {}, 400,
         "invalid_request", "context"),
        (b"[]", {}, 400, "invalid_request", None),
        (json.dumps(NOTE).encode(), {"Content-Type": "text/plain"}, 415,
         "unsupported_media_type", None),
        (json.dumps(NOTE).encode(), {"Idempotency-Key": "k" * 201}, 400, "invalid_request",
         "Idempotency-Key"),
    ],
)  # fmt: skip
def test_a_bad_submission_is_refused_in_aaps_shape_and_stores_nothing(
    app, svc, token, body, headers, status, code, param
):
    sent = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "Idempotency-Key": "bad-1",
        **headers,
    }
    answer = app.test_client().post("/aap/v1/requests", data=body, headers=sent)
    assert answer.status_code == status, answer.get_data(as_text=True)
    error = answer.get_json()["error"]
    assert error["code"] == code and error.get("param") == param
    assert error["request_id"] == answer.headers["X-Request-ID"]
    with svc.db.read() as session:
        assert session.scalars(select(Deferral)).all() == []
        assert session.scalars(select(AapRequest)).all() == []


def test_other_wrong_calls_answer_in_aaps_shape(app, svc, token):
    client = app.test_client()
    auth = {"Authorization": f"Bearer {token}"}
    made = client.post(
        "/aap/v1/requests", json=NOTE, headers={**auth, "Idempotency-Key": "w-1"}
    ).get_json()
    cases = [
        (client.get("/aap/v1/requests/not-a-uuid", headers=auth), 404, "not_found"),
        (client.get(f"/aap/v1/requests/{{{made['id']}}}", headers=auth), 404, "not_found"),
        (client.post(f"/aap/v1/requests/{made['id']}/consume", headers=auth), 400,
         "missing_idempotency_key"),
        (client.post(f"/aap/v1/requests/{made['id']}/outcome", json={"status": "done"},
                     headers=auth), 400, "invalid_request"),
        (client.get(f"/aap/v1/requests/{made['id']}?wait=31", headers=auth), 400,
         "invalid_request"),
        (client.get("/aap/v1/nothing/here", headers=auth), 404, "not_found"),
        (client.get(f"/aap/v1/requests/{made['id']}"), 401, "invalid_credential"),
        (client.get(f"/aap/v1/requests/{made['id']}", headers={"Authorization": token}), 401,
         "invalid_credential"),
        (client.post("/aap/v1/instances", json={"delivery": {"type": "email"}},
                     headers={**auth, "Idempotency-Key": "i-1"}), 400,
         "unsupported_delivery_type"),
        (client.post("/aap/v1/instances", json={"delivery": {
            "type": "webhook", "url": "https://10.0.0.1/hook",
            "registration_id": "8246931c-4ce0-4c15-a94a-e9c078ad06e2",
            "signing_secret": "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}},
            headers={**auth, "Idempotency-Key": "i-2"}), 400, "invalid_webhook_url"),
    ]  # fmt: skip
    for answer, status, code in cases:
        assert answer.status_code == status, answer.get_data(as_text=True)
        assert answer.get_json()["error"]["code"] == code
    # An instance's credential makes requests but registers no instances.
    registered = client.post(
        "/aap/v1/instances", json={}, headers={**auth, "Idempotency-Key": "i-3"}
    )
    assert registered.status_code == 201
    credential = registered.get_json()["credential"]["token"]
    refused = client.post(
        "/aap/v1/instances",
        json={},
        headers={"Authorization": f"Bearer {credential}", "Idempotency-Key": "i-4"},
    )
    assert refused.status_code == 403
    assert refused.get_json()["error"]["type"] == "authorization"
    assert (
        client.get(
            f"/aap/v1/requests/{made['id']}", headers={"Authorization": f"Bearer {credential}"}
        ).status_code
        == 404
    )  # the agent's own request is not the instance's
    assert events_of(svc, deferral_id(made["id"]))[:2] == [
        "deferral.received",
        "deferral.evaluated",
    ]
