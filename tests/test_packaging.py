"""Countersign installs from its wheel and runs from anywhere (PROTOCOL.md section 15).

The wheel is built the way an install builds it (setuptools, from pyproject.toml and
setup.py), offline: no build isolation (the venv's own setuptools, a dev dependency) and no
package index. It must hold every package (review/ with all its sub-packages, queue/ as
approval_queue) and the repository's templates/, static/, config/ and migrations/, inside
the package. Then it is installed into a fresh virtual environment, with its dependencies
at constraints.txt's versions, and run as an operator runs it: `countersign ...` from a
folder outside the repository.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
import zipfile
from pathlib import Path

import httpx
import pytest

from review.bundled import FOLDERS
from review.signing import sign_headers
from tests.helpers import free_port, refund, wait_for

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


def test_only_review_bundled_says_where_the_shipped_files_are():
    """A module that found templates/, config/ ... from its own __file__ would look beside
    the package, where an installed copy has nothing: review/bundled.py answers instead."""
    code = [*(ROOT / "review").rglob("*.py"), *(ROOT / "queue").glob("*.py")]
    finding = [
        p.relative_to(ROOT).as_posix()
        for p in code
        if p.name != "bundled.py" and "__file__" in p.read_text()
    ]
    assert not finding, f"{finding}: use review.bundled.bundled() and resolve()"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("wheel")
    source, dist = folder / "source", folder / "dist"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCES)
    built = subprocess.run(
        [
            sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
            "--no-index", "--disable-pip-version-check", "--quiet", "-w", str(dist), str(source),
        ],
        capture_output=True,
        text=True,
        timeout=100,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    (path,) = dist.glob("countersign_server-*.whl")
    return path


def _names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


@pytest.mark.timeout(150)
def test_it_builds_a_wheel_with_every_package_and_module(wheel):
    names = _names(wheel)
    packages = {p.parent for p in (ROOT / "review").rglob("__init__.py")}
    assert ROOT / "review" / "api" in packages and len(packages) > 2
    expected = {p.relative_to(ROOT).as_posix() for p in (ROOT / "review").rglob("*.py")}
    expected |= {f"approval_queue/{p.name}" for p in (ROOT / "queue").glob("*.py")}
    assert "approval_queue/worker.py" in expected
    missing = sorted(expected - names)
    assert not missing, f"the wheel lacks {missing} (a folder under review/ without __init__.py?)"
    # queue/ only ever under its import name: a top-level `queue` would hide the stdlib's.
    assert not [n for n in names if n.startswith("queue/")]


@pytest.mark.timeout(150)
def test_the_wheel_carries_templates_static_files_config_and_migrations_inside_the_package(
    wheel,
):
    names = _names(wheel)
    expected = {
        f"review/{p.relative_to(ROOT).as_posix()}"
        for folder in FOLDERS
        for p in (ROOT / folder).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    for must in ("review/config/defaults.toml", "review/config/policy.toml"):
        assert must in expected
    assert "review/migrations/env.py" in expected
    assert "review/templates/base.html" in expected
    missing = sorted(expected - names)
    assert not missing, f"the wheel lacks {missing}"
    # Only inside the package: nothing at the top of site-packages but the two packages.
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"review", "approval_queue"}
    with zipfile.ZipFile(wheel) as archive:
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = archive.read(entry_points).decode()
    assert "countersign = review.cli.main:main" in scripts


def _pip(*args: str, timeout: float) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"pip {' '.join(args)}: {done.stdout}{done.stderr}"


def _wheelhouse(wheel: Path) -> Path:
    """Wheels of every dependency, at constraints.txt's versions, kept between runs.

    Resolving some fifty dependencies against the package index costs pip half a minute of
    CPU, on every run. The first run does it once (`pip wheel`, from pip's cache when it
    can) into a folder named for what decides the answer: constraints.txt and the wheel's
    own requirements. Later runs install from that folder alone (--no-index); a changed
    dependency or pin is a new folder.
    """
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        requires = [
            line for line in archive.read(metadata).decode().splitlines()
            if line.startswith("Requires-Dist:")
        ]  # fmt: skip
    key = hashlib.sha256(
        (ROOT / "constraints.txt").read_bytes() + "\n".join(requires).encode()
    ).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    house = cache / "countersign-tests" / f"wheelhouse-{key}"
    if house.is_dir():
        return house
    house.parent.mkdir(parents=True, exist_ok=True)
    filling = Path(tempfile.mkdtemp(prefix="filling-", dir=house.parent))
    _pip("wheel", "-c", str(ROOT / "constraints.txt"), "-w", str(filling), str(wheel), timeout=600)
    for own in filling.glob("countersign_server-*.whl"):
        own.unlink()
    try:
        filling.rename(house)
    except OSError:  # another run filled it first: theirs is as good
        shutil.rmtree(filling, ignore_errors=True)
    return house


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh virtual environment with the wheel and its dependencies: its bin/ folder.

    No pip inside it: the test venv's pip installs into it (`pip --python`), saving
    ensurepip's copy of pip; and no byte-compiling of every module up front.
    """
    venv = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    _pip(
        "--python", str(venv / "bin" / "python"), "install", "--no-compile",
        "--no-index", "--find-links", str(_wheelhouse(wheel)),
        "-c", str(ROOT / "constraints.txt"), str(wheel),
        timeout=300,
    )  # fmt: skip
    return venv / "bin"


def _operator_environment(bin_dir: Path, settings_overrides: dict) -> dict[str, str]:
    """Only what an operator would set: no PYTHONPATH, nothing of the test run's own."""
    kept = {k: v for k, v in os.environ.items() if k in {"HOME", "LANG", "LC_ALL", "TMPDIR"}}
    return {
        **kept,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "DATABASE_URL": settings_overrides["database_url"],
        "REDIS_URL": settings_overrides["redis_url"],
        "COUNTERSIGN_INSTANCE_DIR": settings_overrides["instance_dir"],
        "SECRET_KEY": settings_overrides["secret_key"],
    }


@pytest.mark.timeout(420)
def test_installed_it_migrates_serves_and_takes_a_signed_deferral_from_another_folder(
    installed, settings_overrides, empty_database_url, tmp_path
):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert not elsewhere.resolve().is_relative_to(ROOT)
    env = _operator_environment(
        installed, {**settings_overrides, "database_url": empty_database_url}
    )

    def countersign(*args: str, stdin: str = "") -> str:
        done = subprocess.run(
            [str(installed / "countersign"), *args],
            cwd=elsewhere,
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"countersign {' '.join(args)}: {done.stdout}{done.stderr}"
        return done.stdout

    # The installed package, not the repository's; its files inside it; relative paths
    # from the working directory, except config/..., the config that ships.
    asked = (
        "import json, review, review.bundled as b; print(json.dumps([review.__file__, "
        "b.INSTALLED, str(b.bundled('migrations')), str(b.resolve('config/policy.toml')), "
        "str(b.resolve('keys/audit.pem')), str(b.default_instance_dir())]))"
    )
    where = subprocess.run(
        [str(installed / "python"), "-c", asked],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert where.returncode == 0, where.stderr
    module, is_installed, migrations, policy, key, instance = json.loads(where.stdout)
    package = Path(module).parent
    assert package.is_relative_to(installed.parent) and is_installed
    assert Path(migrations) == package / "migrations" and (package / "migrations/env.py").is_file()
    assert Path(policy) == package / "config" / "policy.toml" and Path(policy).is_file()
    here = elsewhere.resolve()
    assert (Path(key), Path(instance)) == (here / "keys" / "audit.pem", here / "instance")

    assert "database at head" in countersign("db", "upgrade")
    countersign("users", "create", "olivia", "--role", "admin", stdin="correct horse battery\n")
    secret = countersign("agents", "create", "billing-bot", "--owner", "olivia").split()[-1]
    assert secret.startswith("whsec_")

    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    serve = subprocess.Popen(
        [str(installed / "countersign"), "serve", "--port", str(port), "--workers", "1"],
        cwd=elsewhere,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            try:
                return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        said = lambda: (tmp_path / "serve.log").read_text()  # noqa: E731
        wait_for(ready, timeout=90, interval=0.2, message=said)
        body = json.dumps(refund()).encode()
        headers = sign_headers(secret, f"msg_{uuid.uuid4().hex}", body)
        answer = httpx.post(
            f"{base}/api/v1/agents/billing-bot/deferrals",
            content=body,
            headers={**headers, "Content-Type": "application/json"},
            timeout=30,
        )
        assert answer.status_code == 202, answer.text
        assert answer.json()["status"] == "pending"
        # The pages' templates and static files came from inside the installed package.
        assert "<form" in httpx.get(f"{base}/login", timeout=10).text
        assert httpx.get(f"{base}/static/app.css", timeout=10).status_code == 200
    finally:
        serve.terminate()
        serve.wait(timeout=60)
        log.close()
    assert "countersign stopped" in said()
    assert not (elsewhere / "instance").exists()  # state went where the operator said
