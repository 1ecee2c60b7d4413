"""deploy/prometheus/alerts.yml and deploy/grafana/countersign.json (docs/METRICS.md): every
metric they name is one /metrics serves, and promtool accepts the rules and their tests
(when promtool is on PATH: Debian's `prometheus` package has it)."""

import json
import re
import shutil
import subprocess

import pytest

from review.observability import heartbeat
from tests.helpers import ROOT
from tests.metrics_support import family_names

ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "countersign.json"
SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def named_metrics(text: str) -> set[str]:
    """The metric families a text names (a histogram's _bucket is its family's)."""
    names = set()
    for name in re.findall(r"\bcountersign_[a-z_]+", text):
        for suffix in SUFFIXES:
            if name.endswith(suffix):
                name = name.removesuffix(suffix)
                break
        names.add(name)
    return names


@pytest.fixture
def served_names(client, redis_client) -> set[str]:
    heartbeat.beat(redis_client, "host:1")  # so the heartbeat's age is among them
    response = client.get("/metrics")
    assert response.status_code == 200
    return family_names(response.get_data(as_text=True))


def test_every_metric_the_alerts_name_is_served(served_names):
    named = named_metrics(ALERTS.read_text())
    assert len(named) >= 6
    assert named <= served_names, named - served_names


def test_every_metric_the_dashboard_names_is_served(served_names):
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    named = named_metrics("\n".join(exprs))
    assert len(named) >= 12
    assert named <= served_names, named - served_names


def test_the_dashboard_panels_do_not_overlap():
    taken = set()
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        pos = panel["gridPos"]
        cells = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & taken, panel["title"]
        assert pos["x"] + pos["w"] <= 24
        taken |= cells


PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not on PATH (Debian: apt-get install prometheus, which has it)",
)


@needs_promtool
def test_promtool_accepts_the_alert_rules():
    checked = subprocess.run(
        [PROMTOOL, "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@needs_promtool
def test_the_alerts_fire_as_their_unit_tests_say():
    tested = subprocess.run(
        [PROMTOOL, "test", "rules", str(ALERT_TESTS)], capture_output=True, text=True, timeout=60
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
