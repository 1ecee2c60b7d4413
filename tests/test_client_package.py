"""countersign-client is a distribution of its own: its wheel holds the package and its
py.typed, depends on httpx and standardwebhooks only, and importing it loads nothing of
the server's. Built offline, as tests/test_packaging.py builds the server's."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

CLIENT = Path(__file__).resolve().parent.parent / "clients" / "python"
SERVER_SIDE = ("review", "approval_queue", "flask", "sqlalchemy", "rfc8785", "redis")


@pytest.mark.timeout(60)
def test_its_wheel_holds_the_typed_package_and_needs_only_httpx_and_standardwebhooks(tmp_path):
    source, dist = tmp_path / "source", tmp_path / "dist"
    shutil.copytree(CLIENT, source, ignore=shutil.ignore_patterns("*.egg-info", "build"))
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
    (wheel,) = dist.glob("countersign_client-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        requires = [
            line.split(":", 1)[1].strip()
            for line in archive.read(metadata).decode().splitlines()
            if line.startswith("Requires-Dist:")
        ]
    modules = {
        f"countersign_client/{p.name}" for p in (CLIENT / "src" / "countersign_client").glob("*.py")
    }
    assert modules | {"countersign_client/py.typed"} <= names
    runtime = [r for r in requires if "extra ==" not in r]  # extras are the agent's choice
    assert sorted(r.split(">")[0].split("=")[0] for r in runtime) == ["httpx", "standardwebhooks"]
    extras = {r.split("extra ==")[1].strip().strip("'\"") for r in requires if "extra ==" in r}
    assert extras == {"receipts", "openai-agents", "langgraph"}


def test_importing_it_loads_nothing_of_the_server():
    loaded = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            "import sys, countersign_client; print(' '.join(sys.modules))",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
    )
    assert loaded.returncode == 0, loaded.stderr
    modules = {name.split(".")[0] for name in loaded.stdout.split()}
    assert not modules & set(SERVER_SIDE)
