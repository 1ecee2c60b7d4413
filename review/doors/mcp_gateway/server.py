"""The gateway as an MCP server (the official `mcp` SDK's low-level Server), in front of
the upstream MCP server it starts and talks to over stdio.

`tools/list` is the upstream's list, each tool's description noting that a call may need
approval; `tools/call` goes through review/doors/mcp_gateway/calls.py. Nothing else is
proxied (resources, prompts: the gateway declares only tools). Served on stdio, or as
streamable HTTP with `--http HOST:PORT`.
"""

from __future__ import annotations

import logging
import os
import uuid
from typing import Any

import anyio
import mcp_types as types
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.server import Server, ServerRequestContext
from mcp.server.stdio import stdio_server

from review.doors.mcp_gateway import bridge
from review.doors.mcp_gateway.calls import Gateway
from review.services import Services
from review.settings import UNPREFIXED, env_name

log = logging.getLogger(__name__)

NOTE = "(Countersign: a call to this tool may wait for a person's approval.)"
STDIO_CONNECTION = f"stdio-{uuid.uuid4().hex}"  # stdio serves one connection per process


def gated(tool: types.Tool) -> types.Tool:
    description = f"{tool.description}\n\n{NOTE}" if tool.description else NOTE
    return tool.model_copy(update={"description": description})


def upstream_environment() -> dict[str, str]:
    """The gateway's environment without Countersign's own settings: the upstream server
    gets its tokens and paths, never the database URL or the secret key."""
    ours = {env_name(key) for key in UNPREFIXED}
    return {
        k: v for k, v in os.environ.items() if k not in ours and not k.startswith("COUNTERSIGN_")
    }


def connection_of(ctx: ServerRequestContext[Any, Any]) -> str:
    """The client's connection: its Mcp-Session-Id over HTTP; the process on stdio."""
    headers = getattr(ctx.request, "headers", None)
    session_id = headers.get("mcp-session-id") if headers is not None else None
    return f"http-{session_id}" if session_id else STDIO_CONNECTION


def declared_url_elicitation(ctx: ServerRequestContext[Any, Any]) -> bool:
    capabilities = ctx.session.client_capabilities
    return bool(capabilities and capabilities.elicitation and capabilities.elicitation.url)


def client_name(ctx: ServerRequestContext[Any, Any]) -> str | None:
    params = ctx.session.client_params
    if params is None:
        return None
    info = params.client_info
    return f"{info.name} {info.version}".strip()


def build_server(gateway: Gateway, upstream_init: types.InitializeResult) -> Server:
    async def list_tools(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        listed = await gateway.upstream.list_tools(params=params)
        return listed.model_copy(update={"tools": [gated(t) for t in listed.tools]})

    async def call_tool(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        call = bridge.Call(
            tool=params.name,
            args=dict(params.arguments or {}),
            principal=bridge.default_principal(gateway.slug),
            client=client_name(ctx),
        )
        session = ctx.session
        return await gateway.call(
            connection_of(ctx),
            call,
            declared_url_elicitation(ctx),
            notify=session.send_elicit_complete,
        )

    upstream = upstream_init.server_info
    return Server(
        f"countersign-gateway:{upstream.name}",
        version=upstream.version or "",
        instructions=upstream_init.instructions,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


async def run_gateway(
    svc: Services,
    slug: str,
    command: list[str],
    *,
    http: tuple[str, int] | None,
    wait_seconds: float,
) -> None:
    """Start the upstream server, then serve its tools (stdio, or HTTP) until the client
    goes away (stdio) or the process is stopped."""
    bridge.signer_for(svc, slug)  # a wrong slug stops the gateway before it serves
    upstream_params = StdioServerParameters(
        command=command[0], args=command[1:], env=upstream_environment()
    )
    async with stdio_client(upstream_params) as streams, ClientSession(*streams) as upstream:
        upstream_init = await upstream.initialize()
        async with anyio.create_task_group() as tasks:
            gateway = Gateway(svc, slug, upstream, tasks, wait_seconds=wait_seconds)
            server = build_server(gateway, upstream_init)
            try:
                if http is None:
                    await _serve_stdio(server)
                else:
                    await _serve_http(server, *http)
            finally:
                gateway.stopping.set()
                tasks.cancel_scope.cancel()


async def _serve_stdio(server: Server) -> None:
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


async def _serve_http(server: Server, host: str, port: int) -> None:
    import uvicorn

    app = server.streamable_http_app(host=host)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    log.info("MCP gateway listening on http://%s:%d/mcp", host, port)
    await uvicorn.Server(config).serve()
