"""The project's shape: `queue/` never hides the standard library's `queue`."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_queue_folder_has_no_init_so_it_cannot_shadow_stdlib():
    assert not (ROOT / "queue" / "__init__.py").exists()


def test_app_redis_and_rq_import_from_the_project_root_with_stdlib_queue():
    code = (
        "import app, redis, rq, queue, approval_queue.worker; "
        "assert hasattr(queue, 'LifoQueue'), queue; "
        "assert approval_queue.worker.__file__.endswith('queue/worker.py'); print('ok')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_htmx_is_vendored_at_a_pinned_version():
    vendored = list((ROOT / "static").glob("htmx-*.min.js"))
    assert [p.name for p in vendored] == ["htmx-2.0.11.min.js"]
    assert "htmx-2.0.11.min.js" in (ROOT / "templates" / "base.html").read_text()
