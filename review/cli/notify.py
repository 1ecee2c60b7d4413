"""The `notify` commands: the notification webhook's signing secret (docs/NOTIFICATIONS.md)."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from review.notifications.secret import ensure_webhook_secret
from review.services import current_services

notify_cli = AppGroup("notify", help="Notifications: e-mail, Slack, the signed webhook.")


@notify_cli.command("secret")
@click.option("--rotate", is_flag=True, help="Replace it with a new one (the old stops at once).")
def notify_secret(rotate: bool) -> None:
    """Print the webhook's signing secret (whsec_...), made on first use, sealed at rest."""
    click.echo(ensure_webhook_secret(current_services(), rotate=rotate))
