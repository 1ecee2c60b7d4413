"""Where the files that ship with Countersign are, in a checkout and when installed.

The repository keeps templates/, static/, config/ and migrations/ at its top level.
A wheel cannot: setup.py maps each of them into the package (review/templates/,
review/static/, review/config/, review/migrations/), so an installed copy finds them
beside its own modules. A checkout, or an editable install of one, has them beside
the package instead. `bundled()` answers for both, so nothing else asks which it is.

Relative paths in settings (COUNTERSIGN_POLICY_FILE, the key files) follow the same
split: in a checkout they are relative to the repository root, as they always were;
installed, to the working directory, except that `config/...` names the config that
ships with Countersign (the default `config/policy.toml` means the same file in both).
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
SOURCE_ROOT = PACKAGE_DIR.parent  # a checkout's root; site-packages when installed
FOLDERS = ("templates", "static", "config", "migrations")

# Installed from a wheel (or a non-editable `pip install .`): the folders are inside.
INSTALLED = (PACKAGE_DIR / "config" / "defaults.toml").is_file()


def bundled(folder: str) -> Path:
    """The folder that ships with Countersign: templates, static, config or migrations."""
    if folder not in FOLDERS:
        raise ValueError(f"{folder!r} is not one of {', '.join(FOLDERS)}")
    return (PACKAGE_DIR if INSTALLED else SOURCE_ROOT) / folder


def resolve(path: str | Path) -> Path:
    """A path from a setting, made absolute (see the module's docstring for the rule)."""
    path = Path(path)
    if path.is_absolute():
        return path
    if not INSTALLED:
        return SOURCE_ROOT / path
    if path.parts and path.parts[0] in FOLDERS:
        return PACKAGE_DIR / path
    return Path(os.getcwd()) / path


def default_instance_dir() -> Path:
    """instance/ at a checkout's root; installed, instance/ in the working directory."""
    return resolve("instance").resolve()
