"""How a command reports a refusal: one line on stderr, exit status 1."""

from __future__ import annotations

import sys

import click


def fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)
