"""The package list and where each package's files are, which pyproject.toml cannot express.

- Every package under review/ is found (a new sub-package needs no edit here).
- The worker's folder queue/ is installed as `approval_queue`: a top-level package named
  `queue` would hide the standard library's (which redis-py and rq import), so queue/ has
  no __init__.py and nothing finds it on its own.
- The repository's top-level templates/, static/, config/ and migrations/ go into the
  package as review/templates/, review/static/, review/config/ and review/migrations/
  (each sub-folder a package of its own, every file in it package data), so an installed
  copy carries them; review/bundled.py finds them in either place.

tests/test_packaging.py builds the wheel, checks what it holds and runs it installed.
"""

import os
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
BUNDLED = ("templates", "static", "config", "migrations")  # review/bundled.py's FOLDERS


def bundled_packages() -> list[str]:
    """review.templates, review.templates.agents, ..., review.migrations.versions."""
    packages = []
    for folder in BUNDLED:
        for dirpath, dirnames, _ in os.walk(HERE / folder):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            packages.append(".".join(["review", *Path(dirpath).relative_to(HERE).parts]))
    return packages


setup(
    packages=[
        *find_packages(include=["review", "review.*"]),
        "approval_queue",
        *bundled_packages(),
    ],
    package_dir={"approval_queue": "queue", **{f"review.{f}": f for f in BUNDLED}},
    package_data={package: ["*"] for package in bundled_packages()},
)
