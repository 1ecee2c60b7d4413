"""A real MCP server for the gateway's tests (stdio): one destructive tool, one harmless.

`python tests/mcp_upstream.py LOG` serves on stdin/stdout and appends one JSON line per
tool call to LOG, so a test can count how often the gateway forwarded a call.
"""

from __future__ import annotations

import json
import sys

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

LOG = sys.argv[1] if len(sys.argv) > 1 else None

server = MCPServer("upstream-db")


def _log(tool: str, **args: object) -> None:
    if LOG:
        with open(LOG, "a", encoding="utf-8") as out:
            out.write(json.dumps({"tool": tool, "args": args}) + "\n")


@server.tool()
def delete_database(name: str) -> dict:
    """Drop a database and everything in it."""
    _log("delete_database", name=name)
    if name == "locked":
        raise ToolError(f"database {name} is locked")
    return {"deleted": name}


@server.tool()
def echo(text: str) -> str:
    """Say the text back."""
    _log("echo", text=text)
    return text


if __name__ == "__main__":
    server.run("stdio")
