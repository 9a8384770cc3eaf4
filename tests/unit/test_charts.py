"""The Helm charts stay in step with the code: the CRD and RBAC rules they ship are the generated ones,
and every metric the Grafana dashboard queries is one that some part of CameraFleet (or Ray Serve)
exports, under the name Prometheus sees."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from camerafleet.api import telemetry
from camerafleet_dev.generators import chart_files, crd
from camerafleet_operator import metrics as operator_metrics

ROOT = Path(__file__).resolve().parents[2]
CHARTS = ROOT / "charts"
DASHBOARD = CHARTS / "camerafleet-stack" / "dashboards" / "camerafleet.json"
RAY = Path(pytest.importorskip("ray").__file__).parent
#: Ray Serve's own metrics the dashboard shows (Ray adds the ``ray_`` prefix on export).
RAY_SERVE_METRICS = ("serve_deployment_replica_healthy", "serve_autoscaling_target_replicas")
_METRIC = re.compile(r"\b((?:ray_|camerafleet_)[a-zA-Z0-9_]+)\b")


def test_chart_copies_of_the_crd_and_rbac_rules_are_current() -> None:
    assert crd.CHART_CRD_PATH.read_text() == crd.CRD_PATH.read_text()
    rules = chart_files.role_rules()
    for name, path in chart_files.CHART_RULES.items():
        assert yaml.safe_load(path.read_text()) == rules[name], path


def _ray_exported(kind: str, name: str) -> set[str]:
    """Names Ray's metrics agent gives a metric: ``ray_`` prefix; counters as ``_total``, histograms as
    ``_bucket``/``_sum``/``_count``."""
    full = f"ray_{name}"
    if kind == "Counter":
        return {f"{full}_total"}
    if kind == "Histogram":
        return {f"{full}_bucket", f"{full}_sum", f"{full}_count"}
    return {full}


def exported_metric_names() -> set[str]:
    names = {series for m in telemetry.ALL_METRICS for series in m.series_names}
    serve_source = "\n".join(p.read_text(errors="replace") for p in (RAY / "serve" / "_private").glob("*.py"))
    for name in RAY_SERVE_METRICS:
        match = re.search(rf'metrics\.(Counter|Gauge|Histogram)\(\s*"{name}"', serve_source)
        assert match, f"Ray Serve {RAY.parent.name} no longer exports {name}"
        names |= _ray_exported(match.group(1), name)
    return names


def test_operator_metrics_are_the_declared_ones() -> None:
    families = {(m.name, m.type) for m in operator_metrics.REGISTRY.collect()}
    assert families == {(m.name, m.type.value) for m in telemetry.OPERATOR_METRICS}


def test_pipeline_metrics_are_the_declared_ones() -> None:
    source = (ROOT / "pipeline" / "camerafleet" / "actor_metrics.py").read_text()
    used = set(re.findall(r"(?:_counter|KeptGauge|_histogram)\(t\.([A-Z0-9_]+)\)", source))
    assert used == {name for name, value in vars(telemetry).items() if value in telemetry.PIPELINE_METRICS}


def test_every_dashboard_query_uses_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(dashboard["panels"]) >= 6 and exprs
    exported = exported_metric_names()
    queried: set[str] = set()
    for expr in exprs:
        used = set(_METRIC.findall(expr))
        assert used, f"no CameraFleet or Ray metric in {expr!r}"
        queried |= used
    unknown = sorted(queried - exported)
    assert not unknown, f"the dashboard queries metrics nothing exports: {unknown}"
    for needed in (
        "ray_camerafleet_frames_processed_total",
        "ray_camerafleet_frames_dropped_total",
        "ray_camerafleet_frames_failed_total",
        "ray_camerafleet_e2e_latency_ms_bucket",
        "ray_camerafleet_model_batch_size_sum",
        "ray_camerafleet_consumer_lag",
        "ray_serve_deployment_replica_healthy",
    ):
        assert needed in queried, f"the dashboard lacks {needed}"


def test_chart_metadata_and_secure_defaults() -> None:
    for name in ("camerafleet-operator", "camerafleet-stack"):
        chart = yaml.safe_load((CHARTS / name / "Chart.yaml").read_text())
        assert chart["apiVersion"] == "v2" and chart["name"] == name
        assert chart["version"] == "0.1.0" and chart["kubeVersion"].startswith(">=1.27")
        schema = json.loads((CHARTS / name / "values.schema.json").read_text())
        assert schema["additionalProperties"] is False
        assert list((CHARTS / name / "ci").glob("*-values.yaml"))
    values = yaml.safe_load((CHARTS / "camerafleet-operator" / "values.yaml").read_text())
    assert values["image"] == {"repository": "ghcr.io/camerafleet/camerafleet-operator", "tag": "0.1.0", "pullPolicy": "IfNotPresent"}
    sc = values["securityContext"]
    assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
    assert sc["capabilities"]["drop"] == ["ALL"] and sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert values["podSecurityContext"]["runAsNonRoot"] and values["podSecurityContext"]["runAsUser"] == 10001
    assert values["metrics"]["port"] == 9090 and values["metrics"]["serviceMonitor"]["enabled"] is False
    dashboard_cm = (CHARTS / "camerafleet-stack" / "templates" / "dashboard-configmap.yaml").read_text()
    assert "dashboards/camerafleet.json" in dashboard_cm
    stack = yaml.safe_load((CHARTS / "camerafleet-stack" / "values.yaml").read_text())
    assert stack["grafanaDashboard"]["labels"] == {"grafana_dashboard": "1"}
    assert stack["kafka"]["image"]["repository"] == "apache/kafka" and stack["kafka"]["image"]["tag"] == "3.9.1"
