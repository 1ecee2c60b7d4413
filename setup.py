"""The package list, which pyproject.toml cannot express: everything else is there.

Every package under review/ is found (a new sub-package needs no edit here), and the
worker's folder queue/ is added as `approval_queue`: it has no __init__.py, so nothing
finds it, and pyproject.toml's `packages` is either a list or a `find`, never both.
pyproject.toml's `package-dir` maps `approval_queue` to queue/ (a top-level package
named `queue` would hide the standard library's; see the comment there).
tests/test_packaging.py builds the wheel and checks what it holds.
"""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["review", "review.*"]), "approval_queue"])
