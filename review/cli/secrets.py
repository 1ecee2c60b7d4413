"""The `secrets` commands: moving sealed values to the current SECRET_KEY (docs/SECRETS.md)."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from review.cli.output import fail
from review.resealing import reseal_all
from review.sealing import SealError
from review.services import current_services

secrets_cli = AppGroup("secrets", help="Values sealed with SECRET_KEY (agent secrets).")


@secrets_cli.command("reseal")
def secrets_reseal() -> None:
    """Re-seal every sealed value with SECRET_KEY (older ones open via SECRET_KEY_FALLBACKS).

    One transaction: if any value opens with none of the keys, nothing is changed.
    """
    svc = current_services()
    try:
        with svc.db.write() as session:
            counts = reseal_all(session, svc.box)
    except SealError as exc:
        fail(f"{exc}; nothing was resealed")
    for count in counts:
        click.echo(f"{count.what}\tresealed={count.resealed}\talready_current={count.current}")
    total = sum(c.resealed for c in counts)
    click.echo(f"resealed {total} value{'s' if total != 1 else ''} with the current SECRET_KEY")
