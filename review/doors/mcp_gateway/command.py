"""`flask --app app mcp-gateway --agent SLUG [--http HOST:PORT] [--wait N] --upstream -- CMD...`"""

from __future__ import annotations

import click

from review.errors import DomainError
from review.services import current_services


def _host_port(text: str | None) -> tuple[str, int] | None:
    if text is None:
        return None
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter("give HOST:PORT, like 127.0.0.1:8765", param_hint="--http")
    return host.strip("[]"), int(port)


@click.command("mcp-gateway", context_settings={"ignore_unknown_options": True})
@click.option("--agent", "slug", required=True, help="The registered agent the calls are made as.")
@click.option("--http", "http", default=None, help="Serve streamable HTTP on HOST:PORT (/mcp).")
@click.option(
    "--wait",
    "wait_seconds",
    default=300,
    type=click.IntRange(0, 86400),
    show_default=True,
    help="Seconds a call waits for its decision (clients without URL elicitation).",
)
@click.option("--upstream", "upstream", is_flag=True, required=True, help="Then: -- CMD [ARG...]")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def mcp_gateway(
    slug: str, http: str | None, wait_seconds: int, upstream: bool, command: tuple[str, ...]
) -> None:
    """Put Countersign in front of an MCP server: every tool call is a deferral."""
    try:
        import anyio

        from review.doors.mcp_gateway.server import run_gateway
    except ImportError as exc:  # the SDK is an optional dependency
        raise click.ClickException(
            f"the MCP gateway needs the mcp package ({exc}): pip install 'countersign[mcp]'"
        ) from None

    address = _host_port(http)
    try:
        anyio.run(
            lambda: run_gateway(
                current_services(),
                slug,
                list(command),
                http=address,
                wait_seconds=wait_seconds,
            )
        )
    except DomainError as exc:
        raise click.ClickException(exc.message) from None
    except KeyboardInterrupt:
        pass
