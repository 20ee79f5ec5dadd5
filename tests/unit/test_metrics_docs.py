"""docs/metrics.md documents every metric Octoprov exposes, with its type, and nothing else;
docs/grafana-dashboard.json queries only metrics that exist."""

from __future__ import annotations

import json
import re

from api.metrics import ApiMetrics
from octoprov.db import Database
from octoprov.metrics import DatabaseCollector
from octoprov.netboot.metrics import PxeMetrics
from tests.support import ROOT

SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}


def exposed() -> dict[str, str]:
    """Every metric family of the API and of `octoprov pxe`: its exposed name -> type."""
    database = Database("sqlite://")  # describe() reads nothing from it
    api = ApiMetrics(database)
    families = [*DatabaseCollector(database).describe(), *PxeMetrics().registry.collect()]
    for metric in (api.requests, api.callbacks, api.boot_answers):
        families += metric.describe()
    return {family.name + ("_total" if family.type == "counter" else ""): family.type for family in families}


def documented() -> dict[str, str]:
    rows = re.findall(r"^\| `(octoprov_[a-z_]+)` \| (\w+) \|", (ROOT / "docs/metrics.md").read_text(), re.MULTILINE)
    return dict(rows)


def test_every_exposed_metric_is_documented_with_its_type_and_nothing_else():
    assert documented() == exposed()


def test_names_follow_the_conventions():
    for name, kind in exposed().items():
        assert name.startswith("octoprov_")
        assert name.endswith("_total") == (kind == "counter"), name
        if kind == "histogram":
            assert name.endswith("_seconds"), name


def test_the_dashboard_queries_only_metrics_that_exist():
    dashboard = json.loads((ROOT / "docs/grafana-dashboard.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    samples = {name[: -len("_total")] if kind == "counter" else name: kind for name, kind in exposed().items()}
    allowed = {base + suffix for base, kind in samples.items() for suffix in SUFFIXES[kind]}
    named = {name for expr in expressions for name in re.findall(r"\boctoprov_[a-z_]+", expr)}
    assert named and named <= allowed, named - allowed
    used = {name for name in exposed() if any(name.removesuffix("_total") in found for found in named)}
    assert used == set(exposed()), set(exposed()) - used
