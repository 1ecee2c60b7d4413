"""A real OpenID Provider for the SSO tests: panva's certified `oidc-provider` (npm), run
with the machine's Node.js from tests/oidc/ (provider.mjs, package.json, package-lock.json).

`npm ci` runs once per lock file into a cache folder (~/.cache/countersign-tests, or
$XDG_CACHE_HOME), so later runs start the provider at once. Without npm, or with the
npm registry unreachable, the tests that need the provider are skipped, saying so.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers import free_port, wait_for

SOURCE = Path(__file__).resolve().parent / "oidc"
UNREACHABLE = ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ETIMEDOUT", "ECONNRESET", "network")


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "countersign-tests"


@pytest.fixture(scope="session")
def oidc_provider_dir() -> Path:
    """A folder holding tests/oidc/ with its node_modules installed by `npm ci`."""
    npm, node = shutil.which("npm"), shutil.which("node")
    if not npm or not node:
        pytest.skip("npm and node are not on PATH: the OpenID provider cannot be installed")
    lock = (SOURCE / "package-lock.json").read_bytes()
    folder = _cache_root() / f"oidc-provider-{hashlib.sha256(lock).hexdigest()[:16]}"
    if not (folder / "node_modules" / "oidc-provider" / "package.json").exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix="oidc-", dir=folder.parent))
        for name in ("package.json", "package-lock.json"):
            shutil.copy(SOURCE / name, building / name)
        try:
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
                cwd=building, capture_output=True, text=True, timeout=600,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            shutil.rmtree(building, ignore_errors=True)
            pytest.skip("npm ci took over 10 minutes: the npm registry is unreachable")
        if done.returncode != 0:
            shutil.rmtree(building, ignore_errors=True)
            said = done.stderr[-2000:]
            if any(sign in said for sign in UNREACHABLE):
                pytest.skip(f"the npm registry is unreachable: {said.strip()[-300:]}")
            raise AssertionError(f"npm ci failed:\n{said}")
        try:
            building.rename(folder)  # whole, or not at all: another run may have won
        except OSError:
            shutil.rmtree(building, ignore_errors=True)
    shutil.copy(SOURCE / "provider.mjs", folder / "provider.mjs")
    return folder


@dataclass
class OpenIdProvider:
    issuer: str
    client_id: str
    client_secret: str
    process: subprocess.Popen
    log: Path

    def said(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@pytest.fixture
def oidc_provider(oidc_provider_dir, tmp_path) -> Iterator:
    """Factory: start(redirect_uri, accounts) -> a running OpenIdProvider, stopped after
    the test. `accounts` maps each login to its claims; the login is the `sub`."""
    started: list[OpenIdProvider] = []

    def start(redirect_uri: str, accounts: dict[str, dict]) -> OpenIdProvider:
        port = free_port()
        issuer = f"http://127.0.0.1:{port}"
        log = tmp_path / f"oidc-provider-{port}.log"
        env = {
            **os.environ,
            "OIDC_PORT": str(port),
            "OIDC_ISSUER": issuer,
            "OIDC_CLIENT_ID": "countersign",
            "OIDC_CLIENT_SECRET": "a-client-secret-for-the-tests",
            "OIDC_REDIRECT_URI": redirect_uri,
            "OIDC_ACCOUNTS": json.dumps(accounts),
        }
        with log.open("wb") as out:
            process = subprocess.Popen(
                ["node", "provider.mjs"], cwd=oidc_provider_dir, env=env,
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        provider = OpenIdProvider(
            issuer, env["OIDC_CLIENT_ID"], env["OIDC_CLIENT_SECRET"], process, log
        )
        started.append(provider)
        wait_for(
            lambda: _answers(issuer + "/.well-known/openid-configuration") or process.poll(),
            timeout=30,
            message=provider.said,
        )
        assert process.poll() is None, provider.said()
        return provider

    yield start
    for provider in started:
        provider.process.terminate()
        try:
            provider.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            provider.process.kill()
            provider.process.wait()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
