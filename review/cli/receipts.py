"""The `receipts` commands: the key that signs approval receipts (PROTOCOL.md section 13)."""

from __future__ import annotations

from datetime import UTC, datetime

import click
from flask.cli import AppGroup

from review.reviewing import receipts
from review.services import current_services

receipts_cli = AppGroup("receipts", help="The key that signs approval receipts.")


@receipts_cli.command("rotate-key")
def receipts_rotate_key() -> None:
    """Sign receipts with a new key from now on; the old public key stays in the JWKS
    until the receipts it signed have expired."""
    done = receipts.rotate_key(current_services().settings)
    until = datetime.fromtimestamp(done.old_listed_until, UTC)
    click.echo(f"receipts are signed with {done.new.kid} from now on")
    click.echo(f"{done.old.kid} stays in /.well-known/jwks.json until {until:%Y-%m-%dT%H:%M:%SZ}")
