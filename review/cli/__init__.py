"""The operator's commands: `flask --app app <group> <command>` (PROTOCOL.md section 7).

One module per group: operations (db, worker, serve), people (users), agents, audit,
receipts, policy, groups, canaries, secrets; the MCP gateway's command lives with the gateway.
"""

from __future__ import annotations

from flask import Flask

from review.cli.agents import agents_cli
from review.cli.audit import audit_cli
from review.cli.canaries import canaries_cli
from review.cli.groups import groups_cli
from review.cli.notify import notify_cli
from review.cli.operations import db_cli, serve, worker
from review.cli.people import users_cli
from review.cli.policy import policy_cli
from review.cli.receipts import receipts_cli
from review.cli.secrets import secrets_cli
from review.doors.mcp_gateway.command import mcp_gateway


def init_app(app: Flask) -> None:
    command_groups = (
        db_cli,
        users_cli,
        agents_cli,
        audit_cli,
        receipts_cli,
        policy_cli,
        groups_cli,
        notify_cli,
        canaries_cli,
    )
    for group in (*command_groups, secrets_cli):
        app.cli.add_command(group)
    app.cli.add_command(worker)
    app.cli.add_command(serve)
    app.cli.add_command(mcp_gateway)
