"""The wheel holds every package: review/ with all its sub-packages, and queue/ as approval_queue.

Built the way an install builds it (setuptools, from pyproject.toml and setup.py), offline:
no build isolation (the venv's own setuptools, a dev dependency) and no package index.
"""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Left out of the copy a build runs in: the build writes build/ and *.egg-info beside
# its sources, so it does not run in the working tree (other runs may be using it).
NOT_SOURCES = shutil.ignore_patterns(
    ".git",
    ".venv",
    "instance",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".hypothesis",
    ".pytest_cache",
    ".ruff_cache",
    "test-artifacts",
)


def _build_wheel(tmp_path: Path) -> set[str]:
    source, dist = tmp_path / "source", tmp_path / "dist"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCES)
    built = subprocess.run(
        [
            sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
            "--no-index", "--disable-pip-version-check", "--quiet", "-w", str(dist), str(source),
        ],
        capture_output=True,
        text=True,
        timeout=50,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = dist.glob("countersign-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


@pytest.mark.timeout(60)
def test_it_builds_a_wheel_with_every_package_and_module(tmp_path):
    names = _build_wheel(tmp_path)
    packages = {p.parent for p in (ROOT / "review").rglob("__init__.py")}
    assert ROOT / "review" / "api" in packages and len(packages) > 2
    expected = {p.relative_to(ROOT).as_posix() for p in (ROOT / "review").rglob("*.py")}
    expected |= {f"approval_queue/{p.name}" for p in (ROOT / "queue").glob("*.py")}
    assert "approval_queue/worker.py" in expected
    missing = sorted(expected - names)
    assert not missing, f"the wheel lacks {missing} (a folder under review/ without __init__.py?)"
    # queue/ only ever under its import name: a top-level `queue` would hide the stdlib's.
    assert not [n for n in names if n.startswith("queue/")]
