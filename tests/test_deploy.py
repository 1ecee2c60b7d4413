"""deploy/ and review/gunicorn_conf.py: the systemd units pass `systemd-analyze verify`;
two gunicorns on one host keep a control socket each; the example nginx site, in front of
gunicorn, passes each client's own address, https and the request id on to the app.

verify also checks that each ExecStart= command exists and is executable. The units name
/opt/countersign/bin/{countersign,gunicorn} (docs/OPERATING.md installs the wheel there);
here both are links to this run's Python, an executable that exists (tests/test_packaging.py runs
the installed commands themselves).
"""

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from gunicorn.ctl.client import ControlClient

from review.users import create_user
from tests.helpers import app_environment, csrf_token, free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
UNITS = sorted((ROOT / "deploy" / "systemd").glob("*.service"))
INSTALLED_BIN = "/opt/countersign/bin/"


def test_there_are_units_for_the_web_app_the_worker_and_the_migrations():
    assert [u.name for u in UNITS] == [
        "countersign-migrate.service",
        "countersign-web.service",
        "countersign-worker.service",
    ]


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="no systemd-analyze here")
def test_the_systemd_units_pass_systemd_analyze_verify(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for command in ("countersign", "gunicorn"):
        (bin_dir / command).symlink_to(sys.executable)
    for unit in UNITS:
        text = unit.read_text()
        assert INSTALLED_BIN in text
        (tmp_path / unit.name).write_text(text.replace(INSTALLED_BIN, f"{bin_dir}/"))
    checked = subprocess.run(
        ["systemd-analyze", "verify", *(str(tmp_path / u.name) for u in UNITS)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0 and not checked.stderr.strip(), checked.stderr


# --- gunicorn with review/gunicorn_conf.py ------------------------------------------------


@contextmanager
def gunicorn(settings_overrides: dict, log: Path, **variables: str) -> Iterator[tuple[str, int]]:
    """gunicorn as deploy/systemd/countersign-web.service runs it: its base URL and pid."""
    port = free_port()
    env = app_environment(settings_overrides, **variables)
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn", "--config", "python:review.gunicorn_conf",
                "--bind", f"127.0.0.1:{port}", "--workers", "1", "review.wsgi:app",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: _answers(f"{base}/livez"), 60, 0.1, lambda: log.read_text())
            yield base, proc.pid
        finally:
            proc.terminate()
            proc.wait(timeout=90)


def _answers(url: str, **kwargs) -> bool:
    try:
        return httpx.get(url, timeout=2, **kwargs).status_code == 200
    except httpx.HTTPError:
        return False


def _arbiter_pid(control_socket: Path) -> int:
    with ControlClient(str(control_socket), timeout=10) as client:
        return client.send_command("show stats")["pid"]


@pytest.mark.timeout(240)
def test_two_instances_on_one_host_each_keep_their_own_control_socket(settings_overrides, tmp_path):
    # Where gunicorn's default would put both: set, so a shared socket would show there.
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    first, second = (Path(tempfile.mkdtemp(prefix="cs-")) for _ in range(2))
    try:
        with gunicorn(
            settings_overrides, tmp_path / "second.log",
            COUNTERSIGN_INSTANCE_DIR=str(second), XDG_RUNTIME_DIR=str(runtime),
        ) as (_, second_pid):  # fmt: skip
            with gunicorn(
                settings_overrides, tmp_path / "first.log",
                COUNTERSIGN_INSTANCE_DIR=str(first), XDG_RUNTIME_DIR=str(runtime),
            ) as (_, first_pid):  # fmt: skip
                wait_for(lambda: (first / "gunicorn.ctl").exists(), 30)
                wait_for(lambda: (second / "gunicorn.ctl").exists(), 30)
                assert _arbiter_pid(first / "gunicorn.ctl") == first_pid
                assert _arbiter_pid(second / "gunicorn.ctl") == second_pid
                assert not (runtime / "gunicorn.ctl").exists()
            # The first stopped and took its own socket away, not the second's.
            assert not (first / "gunicorn.ctl").exists()
            assert _arbiter_pid(second / "gunicorn.ctl") == second_pid
    finally:
        for folder in (first, second):
            shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.timeout(180)
def test_json_logs_make_gunicorns_own_lines_json_with_the_request_id(settings_overrides, tmp_path):
    log = tmp_path / "json.log"
    folder = Path(tempfile.mkdtemp(prefix="cs-"))
    try:
        with gunicorn(
            settings_overrides, log,
            COUNTERSIGN_INSTANCE_DIR=str(folder), COUNTERSIGN_LOG_FORMAT="json",
        ) as (base, _):  # fmt: skip
            answer = httpx.get(f"{base}/healthz?probe=1", headers={"X-Request-ID": "req-json-1"})
            assert answer.headers["X-Request-ID"] == "req-json-1"
            wait_for(lambda: "req-json-1" in log.read_text(), 10)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    (access,) = [line for line in lines if line.get("request_id") == "req-json-1"]
    assert access["logger"] == "gunicorn.access" and access["status"] == 200
    assert access["method"] == "GET" and access["path"] == "/healthz"
    assert access["query"] == "probe=1" and isinstance(access["duration_ms"], int)
    assert any(line["logger"] == "gunicorn.error" for line in lines)  # "Listening at", as JSON


# --- deploy/nginx/countersign.conf in front of it ------------------------------------------


def _self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _site(folder: Path, upstream: str, http_port: int, https_port: int) -> Path:
    """deploy/nginx/countersign.conf with this test's ports, certificate and log file."""
    cert, key = _self_signed(folder)
    text = (ROOT / "deploy" / "nginx" / "countersign.conf").read_text()
    replacements = {
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen [::]:80;": "",
        "listen 443 ssl;": f"listen 127.0.0.1:{https_port} ssl;",
        "listen [::]:443 ssl;": "",
        "server 127.0.0.1:8000;": f"server {upstream};",
        "/etc/letsencrypt/live/countersign.example.com/fullchain.pem": str(cert),
        "/etc/letsencrypt/live/countersign.example.com/privkey.pem": str(key),
        "/var/log/nginx/countersign.access.log": str(folder / "access.log"),
    }
    for old, new in replacements.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    site = folder / "countersign.conf"
    site.write_text(text)
    main = folder / "nginx.conf"
    main.write_text(
        f"daemon off;\nuser root;\npid {folder}/nginx.pid;\nevents {{}}\n"
        f"http {{\n  client_body_temp_path {folder}/body;\n  proxy_temp_path {folder}/proxy;\n"
        f"  include {site};\n}}\n"
    )
    return main


def _log_in(base: str, source: str, password: str, referer: str = "") -> httpx.Response:
    """A browser at `source` (a loopback address of its own) logs in as rita."""
    transport = httpx.HTTPTransport(local_address=source, verify=False)
    with httpx.Client(base_url=base, transport=transport, timeout=20) as browser:
        token = csrf_token(browser.get("/login").text)
        return browser.post(
            "/login",
            data={"username": "rita", "password": password, "csrf_token": token},
            # What a browser sends; over https the CSRF check compares it with the host.
            headers={"Referer": referer or f"{base}/login"},
        )


@pytest.mark.skipif(not shutil.which("nginx"), reason="no nginx here (apt-get install nginx)")
@pytest.mark.timeout(240)
def test_behind_the_example_nginx_each_client_is_its_own_address_and_cookies_are_secure(
    settings_overrides, svc, tmp_path
):
    with svc.db.write() as session:
        create_user(session, "rita", "reviewer", "correct horse battery")
    http_port, https_port = free_port(), free_port()
    with gunicorn(
        settings_overrides, tmp_path / "gunicorn.log",
        COUNTERSIGN_TRUSTED_PROXIES="1", COUNTERSIGN_SESSION_COOKIE_SECURE="1",
    ) as (upstream, _):  # fmt: skip
        main = _site(tmp_path, upstream.removeprefix("http://"), http_port, https_port)
        error_log = tmp_path / "error.log"
        nginx = subprocess.Popen(
            ["nginx", "-p", str(tmp_path), "-e", str(error_log), "-c", str(main)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        base = f"https://127.0.0.1:{https_port}"
        try:
            wait_for(lambda: _answers(f"{base}/livez", verify=False), 30, 0.1, error_log.read_text)
            # Twenty wrong passwords, each from an address of its own: no address failed
            # more than once, so a twenty-first gets in (behind the proxy, without
            # COUNTERSIGN_TRUSTED_PROXIES=1, all of them would be 127.0.0.1's).
            for i in range(20):
                assert _log_in(base, f"127.0.0.{10 + i}", "wrong").status_code == 401
            answer = _log_in(base, "127.0.0.40", "correct horse battery")
            assert answer.status_code == 302, answer.text
            assert "secure" in answer.headers["set-cookie"].lower()
            assert answer.headers["strict-transport-security"].startswith("max-age=")
            assert len(answer.headers.get_list("strict-transport-security")) == 1
            request_id = answer.headers["x-request-id"]
            # The app knows the request came over https (X-Forwarded-Proto): it checks the
            # Referer of a form against the host, which it does for https requests only.
            elsewhere = _log_in(base, "127.0.0.41", "correct horse battery", "https://x.test/")
            assert elsewhere.status_code == 400 and "referrer" in elsewhere.text.lower()
            plain = httpx.get(f"http://127.0.0.1:{http_port}/login", timeout=10)
            assert plain.status_code == 301 and plain.headers["location"].startswith("https://")
        finally:
            nginx.terminate()
            nginx.wait(timeout=30)
    # The same request, by the same id, in nginx's access log and in gunicorn's.
    (proxied,) = [line for line in (tmp_path / "access.log").read_text().splitlines()
                  if f"request_id={request_id}" in line]  # fmt: skip
    assert proxied.startswith("127.0.0.40 ") and '"POST /login' in proxied
    (served,) = [line for line in (tmp_path / "gunicorn.log").read_text().splitlines()
                 if f"request_id={request_id}" in line]  # fmt: skip
    assert 'forwarded_for="127.0.0.40"' in served and '"POST /login' in served
