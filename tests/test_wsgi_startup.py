"""The WSGI app module (what gunicorn, the bench and `flask --app app` load) freezes what
start-up built, so a full garbage collection during a request walks only what requests
made (docs/SCALING.md, "Intake's tail"), and has the reviewer pages' templates compiled
before the first request (docs/REVIEWING.md)."""

import subprocess
import sys

from tests.helpers import ROOT, app_environment

REPORT = (
    "import gc, sys, review.wsgi; cache = review.wsgi.app.jinja_env.cache; "
    "print(gc.get_freeze_count(), sys.getswitchinterval(), ','.join(k[1] for k in cache.keys()))"
)


def _loaded_app_report(settings_overrides) -> list[str]:
    """REPORT's three fields, printed by a process that loaded review.wsgi."""
    loaded = subprocess.run(
        [sys.executable, "-c", REPORT],
        cwd=ROOT,
        env=app_environment(settings_overrides),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert loaded.returncode == 0, loaded.stderr
    return loaded.stdout.split()[-3:]


def test_loading_the_wsgi_app_leaves_start_up_objects_frozen(settings_overrides):
    frozen = int(_loaded_app_report(settings_overrides)[0])
    assert frozen > 50_000  # modules, the app, its policy, SQLAlchemy's tables


def test_loading_the_wsgi_app_shortens_the_gil_switch_interval(settings_overrides):
    """The holder of SQLite's writer lock gets the GIL back within 0.5 ms, not 5."""
    assert float(_loaded_app_report(settings_overrides)[1]) == 0.0005


def test_loading_the_wsgi_app_compiles_the_reviewer_pages_templates(settings_overrides):
    """The first batch pages after a start render, not compile: every template under
    templates/review/ and the layout is in Jinja's cache before any request."""
    compiled = set(_loaded_app_report(settings_overrides)[2].split(","))
    folder = ROOT / "templates"
    wanted = {p.relative_to(folder).as_posix() for p in (folder / "review").rglob("*.html")}
    assert len(wanted) > 20
    assert wanted | {"base.html"} <= compiled
