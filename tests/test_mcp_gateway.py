"""The MCP approval gateway (PROTOCOL.md section 11), end to end with real parts.

The gateway runs as the operator runs it (`flask --app app mcp-gateway ...`, a process of
its own on the test's database and Redis) in front of a real upstream MCP server
(tests/mcp_upstream.py, which logs every call it runs), and is driven by the official
SDK's own client, over stdio and over streamable HTTP. People decide through the domain,
as the reviewer pages do.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError, UrlElicitationRequiredError
from sqlalchemy import select

from review.agents import killswitch
from review.audit.verify import verify_chain
from review.models import AuditEvent, Deferral, utcnow
from review.reviewing.claims import claim_batch
from review.reviewing.decisions import decide
from review.reviewing.expiry import expire_due
from tests.helpers import Browser, reviewer

ROOT = Path(__file__).resolve().parent.parent
PUBLIC_URL = "https://countersign.test"
NOTE = "may wait for a person's approval"


@dataclass
class World:
    """The service (the test's app), the agent the gateway calls as, and what it runs."""

    app: Any
    svc: Any
    env: dict[str, str]
    log: Path  # one line per call the upstream server ran
    rita: Any  # a reviewer, as the domain sees her
    notes: list[Any] = field(default_factory=list)  # notifications the client received

    def gateway(self, *options: str) -> list[str]:
        return [
            "-m",
            "flask",
            "--app",
            "app",
            "mcp-gateway",
            "--agent",
            "db-bot",
            *options,
            "--upstream",
            "--",
            sys.executable,
            str(ROOT / "tests" / "mcp_upstream.py"),
            str(self.log),
        ]

    def ran(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def deferrals(self) -> list[Deferral]:
        with self.svc.db.read() as session:
            return list(session.scalars(select(Deferral).order_by(Deferral.created_at)))

    def resource(self, deferral_id: str) -> dict[str, Any]:
        from review.resources import deferral_resource

        with self.svc.db.read() as session:
            return deferral_resource(session.get(Deferral, deferral_id))

    async def pending(self, tool: str, count: int = 1) -> Deferral:
        """The newest undecided deferral of `tool`, once there are `count` of them in all."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            found = [d for d in self.deferrals() if d.tool == tool]
            if len(found) >= count and found[-1].status == "pending":
                return found[-1]
            await anyio.sleep(0.05)
        raise AssertionError(f"no pending deferral of {tool}: {self.deferrals()}")

    def approve(self, deferral_id: str) -> None:
        claim_batch(self.svc, self.rita)
        decided = decide(self.svc, self.rita, deferral_id, "approve")
        assert decided.status == "approved", decided.message

    def reject(self, deferral_id: str, reason: str) -> None:
        claim_batch(self.svc, self.rita)
        assert decide(self.svc, self.rita, deferral_id, "reject", reason).status == "rejected"

    async def on_message(self, message: Any) -> None:
        self.notes.append(message)


def _world(make_app, make_agent, settings_overrides, tmp_path, **settings: Any) -> World:
    app = make_app(public_url=PUBLIC_URL, **settings)
    make_agent("db-bot")
    svc = app.extensions["countersign"]
    env = {
        "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
        "DATABASE_URL": settings_overrides["database_url"],
        "REDIS_URL": settings_overrides["redis_url"],
        "SECRET_KEY": settings_overrides["secret_key"],
        "COUNTERSIGN_INSTANCE_DIR": settings_overrides["instance_dir"],
        "COUNTERSIGN_PUBLIC_URL": PUBLIC_URL,
        "PYTHONPATH": str(ROOT),
        **{f"COUNTERSIGN_{k.upper()}": str(v) for k, v in settings.items()},
    }
    return World(app, svc, env, tmp_path / "upstream.log", reviewer(svc, "rita"))


@pytest.fixture
def world(make_app, make_agent, settings_overrides, tmp_path) -> World:
    return _world(make_app, make_agent, settings_overrides, tmp_path)


async def _declines(context: Any, params: Any) -> types.ElicitResult:
    """An elicitation callback: having one declares elicitation (form and URL) to servers."""
    return types.ElicitResult(action="decline")


@asynccontextmanager
async def over_stdio(world: World, *options: str, url_elicitation: bool = False):
    params = StdioServerParameters(
        command=sys.executable, args=world.gateway(*options), env=world.env, cwd=str(ROOT)
    )
    callback = _declines if url_elicitation else None
    async with (
        stdio_client(params) as (read, write),
        ClientSession(
            read, write, elicitation_callback=callback, message_handler=world.on_message
        ) as session,
    ):
        await session.initialize()
        yield session


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@asynccontextmanager
async def over_http(world: World, *options: str, url_elicitation: bool = False):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, *world.gateway("--http", f"127.0.0.1:{port}", *options)],
        cwd=ROOT,
        env=world.env,
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not _port_open(port):
            assert process.poll() is None, "the gateway exited"
            assert time.monotonic() < deadline, "the gateway did not listen"
            await anyio.sleep(0.1)
        callback = _declines if url_elicitation else None
        async with (
            streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (read, write),
            ClientSession(
                read, write, elicitation_callback=callback, message_handler=world.on_message
            ) as session,
        ):
            await session.initialize()
            yield session
    finally:
        process.terminate()
        process.wait(15)


@pytest.fixture(params=["stdio", "http"])
def connect(request):
    """Connect the SDK's client to a gateway over one transport, then the other."""
    return over_stdio if request.param == "stdio" else over_http


def run(scenario) -> None:
    anyio.run(scenario)


def text_of(result: types.CallToolResult) -> str:
    return " ".join(block.text for block in result.content if block.type == "text")


class Call:
    """A tools/call running in the background while the test decides."""

    def __init__(self) -> None:
        self.result: types.CallToolResult | None = None
        self.error: BaseException | None = None
        self.done = anyio.Event()
        self.took = 0.0

    async def run(self, session: ClientSession, tool: str, args: dict[str, Any]) -> None:
        started = time.monotonic()
        try:
            self.result = await session.call_tool(tool, args)
        except Exception as exc:
            self.error = exc
        finally:
            self.took = time.monotonic() - started
            self.done.set()


# --- tools/list -------------------------------------------------------------------------


def test_it_lists_the_upstream_tools_each_noting_that_a_call_may_need_approval(world, connect):
    async def scenario():
        async with connect(world) as session:
            listed = await session.list_tools()
        tools = {t.name: t for t in listed.tools}
        assert set(tools) == {"delete_database", "echo"}
        assert tools["delete_database"].description.startswith("Drop a database")
        assert all(NOTE in t.description for t in listed.tools)
        assert tools["echo"].input_schema["required"] == ["text"]

    run(scenario)
    assert world.deferrals() == []  # listing is not a call


# --- a held call ------------------------------------------------------------------------


def test_it_holds_a_call_until_approved_then_forwards_it_once_and_reports_it(world, connect):
    async def scenario():
        async with connect(world) as session, anyio.create_task_group() as tasks:
            call = Call()
            tasks.start_soon(call.run, session, "delete_database", {"name": "prod"})
            deferral = await world.pending("mcp.delete_database")
            await anyio.sleep(0.3)
            assert not call.done.is_set() and world.ran() == []  # held; nothing ran
            assert deferral.action == {"tool": "mcp.delete_database", "args": {"name": "prod"}}
            assert deferral.summary == 'MCP call delete_database(name="prod")'
            assert deferral.principal_id == "system:mcp:db-bot"
            assert deferral.labels["door"] == "mcp"
            world.approve(deferral.id)
            with anyio.fail_after(10):
                await call.done.wait()
        assert call.error is None, call.error
        assert not call.result.is_error
        assert json.loads(text_of(call.result)) == {"deleted": "prod"}
        return deferral.id

    deferral_id = anyio.run(scenario)
    assert world.ran() == [{"tool": "delete_database", "args": {"name": "prod"}}]
    resource = world.resource(deferral_id)
    assert resource["status"] == "approved"
    assert resource["execution"]["outcome"] == "succeeded"
    assert resource["execution"]["result"] == [
        {"type": "text", "text": json.dumps({"deleted": "prod"}, indent=2)}
    ]
    with world.svc.db.read() as session:
        kinds = session.scalars(
            select(AuditEvent.event_type).where(AuditEvent.deferral_id == deferral_id)
        ).all()
        assert verify_chain(session).ok
    assert {"deferral.received", "deferral.approved", "execution.reported"} <= set(kinds)
    page = Browser(world.app.test_client(), "rita").get("/agents/db-bot").get_data(as_text=True)
    assert deferral_id in page


def test_a_pending_call_shows_in_the_queue(world):
    async def scenario():
        async with over_stdio(world, "--wait", "1") as session:
            result = await session.call_tool("echo", {"text": "hello"})
        assert result.is_error

    run(scenario)
    queue = Browser(world.app.test_client(), "rita").get("/queue").get_data(as_text=True)
    assert "MCP call echo(text=&#34;hello&#34;)" in queue or "MCP call echo(" in queue


def test_it_answers_a_rejected_call_with_a_tool_error_naming_the_reason(world, connect):
    async def scenario():
        async with connect(world) as session, anyio.create_task_group() as tasks:
            call = Call()
            tasks.start_soon(call.run, session, "delete_database", {"name": "prod"})
            deferral = await world.pending("mcp.delete_database")
            world.reject(deferral.id, "not the production database, ever")
            with anyio.fail_after(10):
                await call.done.wait()
        assert call.result.is_error
        said = text_of(call.result)
        assert "rejected by rita: not the production database, ever" in said
        assert f"{PUBLIC_URL}/deferrals/{deferral.id}" in said

    run(scenario)
    assert world.ran() == []


def test_the_kill_switch_answers_a_held_call_at_once(world, connect):
    async def scenario():
        async with connect(world, "--wait", "120") as session, anyio.create_task_group() as tasks:
            call = Call()
            tasks.start_soon(call.run, session, "delete_database", {"name": "prod"})
            deferral = await world.pending("mcp.delete_database")
            flipped = time.monotonic()
            killswitch.kill(world.svc, "db-bot", killswitch.Actor("user", "olivia"), "incident 7")
            with anyio.fail_after(10):
                await call.done.wait()
            assert time.monotonic() - flipped < 5  # woken, not timed out
        assert call.result.is_error
        assert "killed" in text_of(call.result) and deferral.id in text_of(call.result)

    run(scenario)
    assert world.ran() == []


def test_an_expiry_answers_a_held_call_at_once(world):
    async def scenario():
        async with (
            over_stdio(world, "--wait", "120") as session,
            anyio.create_task_group() as tasks,
        ):
            call = Call()
            tasks.start_soon(call.run, session, "echo", {"text": "hi"})
            await world.pending("mcp.echo")
            assert expire_due(world.svc, now=utcnow() + timedelta(days=2)) == 1  # the worker's
            with anyio.fail_after(10):
                await call.done.wait()
        assert call.result.is_error and "expired" in text_of(call.result)

    run(scenario)
    assert world.ran() == []


def test_a_failing_upstream_tool_is_reported_as_a_failed_execution(world):
    async def scenario():
        async with over_stdio(world) as session, anyio.create_task_group() as tasks:
            call = Call()
            tasks.start_soon(call.run, session, "delete_database", {"name": "locked"})
            world.approve((await world.pending("mcp.delete_database")).id)
            with anyio.fail_after(10):
                await call.done.wait()
        assert call.result.is_error

    run(scenario)
    [deferral] = world.deferrals()
    assert world.resource(deferral.id)["execution"]["outcome"] == "failed"


def test_a_call_not_decided_in_time_says_where_it_waits_and_its_retry_is_the_same_call(world):
    async def scenario():
        async with over_stdio(world, "--wait", "1") as session:
            started = time.monotonic()
            first = await session.call_tool("delete_database", {"name": "prod"})
            assert 0.9 < time.monotonic() - started < 10
            assert first.is_error
            [deferral] = world.deferrals()
            assert f"{PUBLIC_URL}/deferrals/{deferral.id}" in text_of(first)
            world.approve(deferral.id)
            again = await session.call_tool("delete_database", {"name": "prod"})
            assert not again.is_error
            assert len(world.deferrals()) == 1  # the retry was the same deferral
            third = Call()  # once answered, the same call asks again
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(third.run, session, "delete_database", {"name": "prod"})
                await world.pending("mcp.delete_database", count=2)
                tasks.cancel_scope.cancel()

    run(scenario)
    assert world.ran() == [{"tool": "delete_database", "args": {"name": "prod"}}]


# --- URL elicitation --------------------------------------------------------------------


def test_a_client_that_declared_url_elicitation_gets_the_page_then_its_retry_runs(world, connect):
    async def scenario():
        async with connect(world, url_elicitation=True) as session:
            with pytest.raises(MCPError) as raised:
                await session.call_tool("delete_database", {"name": "prod"})
            assert raised.value.code == -32042
            [elicitation] = UrlElicitationRequiredError.from_error(raised.value.error).elicitations
            [deferral] = world.deferrals()
            assert deferral.status == "pending"
            assert elicitation.url == f"{PUBLIC_URL}/deferrals/{deferral.id}"
            assert elicitation.elicitation_id == deferral.id
            with pytest.raises(MCPError):  # asked again before the decision: the same deferral
                await session.call_tool("delete_database", {"name": "prod"})
            assert len(world.deferrals()) == 1
            world.approve(deferral.id)
            with anyio.fail_after(10):
                while not _completed(world.notes, deferral.id):
                    await anyio.sleep(0.05)
            result = await session.call_tool("delete_database", {"name": "prod"})
            assert json.loads(text_of(result)) == {"deleted": "prod"}
            return deferral.id

    deferral_id = anyio.run(scenario)
    assert world.ran() == [{"tool": "delete_database", "args": {"name": "prod"}}]
    assert world.resource(deferral_id)["execution"]["outcome"] == "succeeded"


def _completed(notes: list[Any], elicitation_id: str) -> bool:
    return any(
        isinstance(n, types.ElicitCompleteNotification)
        and n.params.elicitation_id == elicitation_id
        for n in notes
    )


def test_a_rejection_reaches_the_url_elicitation_client_on_its_retry(world):
    async def scenario():
        async with over_stdio(world, url_elicitation=True) as session:
            with pytest.raises(MCPError):
                await session.call_tool("echo", {"text": "hi"})
            [deferral] = world.deferrals()
            world.reject(deferral.id, "no")
            with anyio.fail_after(10):
                while not _completed(world.notes, deferral.id):
                    await anyio.sleep(0.05)
            result = await session.call_tool("echo", {"text": "hi"})
            assert result.is_error and "rejected by rita: no" in text_of(result)

    run(scenario)
    assert world.ran() == []


# --- the policy decides ------------------------------------------------------------------

POLICY = """
[[rule]]
id = "echo_only_talks"
kind = "tool"
match = ["mcp.echo"]
points = 0
detail = "{tool} changes nothing"
outcome = "allow"

[[rule]]
id = "no_dropping_databases"
kind = "tool"
match = ["mcp.delete_*"]
points = 50
detail = "{tool} destroys data"
outcome = "deny"
"""


@pytest.fixture
def policy_world(make_app, make_agent, settings_overrides, tmp_path) -> World:
    """A world whose policy allows echo and denies dropping databases."""
    from review.intake.policy_loading import load_policy
    from review.settings import SettingsError

    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    try:
        load_policy(path, (25, 50, 75))
    except SettingsError:
        pytest.skip("policy outcomes (PROTOCOL.md section 10) are not in this tree yet")
    return _world(make_app, make_agent, settings_overrides, tmp_path, policy_file=path)


def test_a_call_the_policy_allows_is_forwarded_at_once_and_reported(policy_world):
    world = policy_world

    async def scenario():
        async with over_stdio(world, "--wait", "120") as session:
            return await session.call_tool("echo", {"text": "hi"})

    result = anyio.run(scenario)
    assert not result.is_error and result.structured_content == {"result": "hi"}
    assert world.ran() == [{"tool": "echo", "args": {"text": "hi"}}]
    [deferral] = world.deferrals()
    resource = world.resource(deferral.id)
    assert resource["decision"]["decided_by"] == ["policy"]
    assert resource["execution"] == {
        "outcome": "succeeded",
        "result": {"result": "hi"},
        "reported_at": resource["execution"]["reported_at"],
    }


def test_a_call_the_policy_denies_is_a_tool_error_naming_the_rule(policy_world):
    world = policy_world

    async def scenario():
        async with over_stdio(world, "--wait", "120") as session:
            return await session.call_tool("delete_database", {"name": "prod"})

    result = anyio.run(scenario)
    assert result.is_error and "no_dropping_databases" in text_of(result)
    assert world.ran() == []
    [deferral] = world.deferrals()
    assert deferral.status == "rejected"


# --- what is refused before a deferral exists ---------------------------------------------


def test_a_call_for_a_stopped_agent_is_refused_and_audited(world):
    killswitch.kill(world.svc, "db-bot", killswitch.Actor("user", "olivia"), "maintenance")

    async def scenario():
        async with over_stdio(world) as session:
            result = await session.call_tool("echo", {"text": "hi"})
        assert result.is_error and "stopped: maintenance" in text_of(result)

    run(scenario)
    assert world.deferrals() == [] and world.ran() == []
    with world.svc.db.read() as session:
        refused = session.scalars(
            select(AuditEvent.payload).where(AuditEvent.event_type == "request.refused")
        ).all()
    assert [json.loads(p)["code"] for p in refused] == ["agent_killed"]


def test_arguments_countersign_cannot_store_are_refused_not_forwarded(world):
    async def scenario():
        async with over_stdio(world) as session:
            result = await session.call_tool("echo", {"text": "nul \x00 inside"})
        assert result.is_error and "Countersign refused" in text_of(result)
        assert "/action/args/text must not contain NUL characters" in text_of(result)

    run(scenario)
    assert world.deferrals() == [] and world.ran() == []


def test_the_gateway_will_not_start_for_an_unknown_agent(world):
    done = subprocess.run(
        [sys.executable, *world.gateway()[:6], "no-such-bot", "--upstream", "--", "true"],
        cwd=ROOT,
        env=world.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "no-such-bot is not registered" in done.stderr


def test_a_result_too_large_or_unstorable_is_kept_as_its_size_and_digest(make_app):
    from review.doors.mcp_gateway.bridge import storable_result

    svc = make_app(max_body_bytes=1024).extensions["countersign"]
    assert storable_result(svc, {"rows": [1, 2]}) == {"rows": [1, 2]}
    big = storable_result(svc, "x" * 2000)
    assert big["omitted"] == "over the size limit" and big["bytes"] == 2002
    assert big["digest"].startswith("sha256:")
    assert "must not contain NUL characters" in storable_result(svc, "a\x00b")["omitted"]


def test_an_approval_of_edited_arguments_forwards_exactly_those_once(world):
    """PROTOCOL.md section 11: the approved arguments, a reviewer's edits included."""
    from review.reviewing.edits import edit_and_approve

    async def scenario():
        async with over_stdio(world) as session, anyio.create_task_group() as tasks:
            call = Call()
            tasks.start_soon(call.run, session, "echo", {"text": "drop everything"})
            deferral = await world.pending("mcp.echo")
            claim_batch(world.svc, world.rita)
            edited = edit_and_approve(world.svc, world.rita, deferral.id, {"text": "drop nothing"})
            assert edited.status == "approved", edited.message
            with anyio.fail_after(10):
                await call.done.wait()
        assert call.error is None and not call.result.is_error, call.result
        assert "drop nothing" in text_of(call.result)
        return deferral.id

    deferral_id = anyio.run(scenario)
    ran = [r for r in world.ran() if r["tool"] == "echo"]
    assert ran == [{"tool": "echo", "args": {"text": "drop nothing"}}]
    resource = world.resource(deferral_id)
    assert resource["decision"]["edited"] is True
    assert resource["execution"]["outcome"] == "succeeded"
