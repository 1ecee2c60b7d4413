"""The `countersign` command: `countersign serve|worker|db upgrade|users ...|agents ...|audit ...`.

The same commands as `flask --app app ...` (PROTOCOL.md section 15): Flask's own command
group, loading the app from create_app() instead of an app.py, so it works wherever the
package is installed. pyproject.toml's [project.scripts] points here, and
`python -m review` runs it too.
"""

from __future__ import annotations

import sys

import click
from flask import Flask
from flask.cli import FlaskGroup

from review.app_factory import create_app
from review.settings import SettingsError

DISTRIBUTION = "countersign-server"


def _load_app() -> Flask:
    try:
        return create_app()
    except SettingsError as exc:  # as app.py does: the setting's name, not a traceback
        sys.exit(f"countersign: bad setting: {exc}")


def _group() -> FlaskGroup:
    group = FlaskGroup(
        name="countersign",
        help="Countersign: human approval for AI agents' risky actions.",
        create_app=_load_app,
        add_default_commands=False,  # no `run` (the dev server), `shell` or `routes`
        add_version_option=False,
        load_dotenv=False,  # settings come from the environment alone, as for gunicorn
        set_debug_flag=False,
    )
    # The app is always create_app()'s: drop Flask's --app, --env-file and --debug.
    group.params = [p for p in group.params if p.name not in {"app", "env_file", "debug"}]
    click.version_option(package_name=DISTRIBUTION, prog_name="countersign")(group)
    return group


main = _group()
