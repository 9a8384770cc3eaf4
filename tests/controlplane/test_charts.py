"""The Helm charts against the real control plane with the pinned helm: lint, server-side dry-run of
everything they render, an install of the operator chart whose ServiceAccount then runs the operator
(locally: nothing runs pods here) against a real Kafka, and values that helm must refuse."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from camerafleet_dev.devservers import helm as helm_mod
from camerafleet_dev.generators import chart_files
from camerafleet_dev.generators.crd import CRD_PATH
from camerafleet_operator.render import LABEL_FLEET
from tests.fixtures.prometheus import RULES, SCRAPE_S, dashboard_queries, empty_or_unlabelled
from tests.fixtures.servers import _ensure_fetched

pytestmark = pytest.mark.controlplane

ROOT = Path(__file__).resolve().parents[2]
CHARTS = ROOT / "charts"
OPERATOR_CHART = CHARTS / "camerafleet-operator"
STACK_CHART = CHARTS / "camerafleet-stack"
INSTALL_NS = "cf-chart"
RELEASE = "cf-chart"
FULLNAME = f"{RELEASE}-camerafleet-operator"


class Helm:
    def __init__(self, binary: Path, kubeconfig: Path, home: Path):
        self.binary = binary
        self.env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(self.binary), *args], env=self.env, capture_output=True, text=True, timeout=180)
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc


@pytest.fixture(scope="module")
def helm(request, controlplane, tmp_path_factory) -> Helm:
    _ensure_fetched(request.config, "helm", helm_mod.is_fetched, helm_mod.fetch_helm)
    controlplane.apply_crd(CRD_PATH)
    return Helm(helm_mod.binary(), controlplane.kubeconfig, tmp_path_factory.mktemp("helm"))


def _ci_values(chart: Path) -> list[Path]:
    found = sorted((chart / "ci").glob("*-values.yaml"))
    assert found, f"{chart} has no ci/*-values.yaml"
    return found


def _docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def test_lint_strict_every_scenario(helm) -> None:
    for chart in (OPERATOR_CHART, STACK_CHART):
        for values in _ci_values(chart):
            proc = helm("lint", "--strict", str(chart), "-f", str(values))
            assert "0 chart(s) failed" in proc.stdout, proc.stdout


CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Namespace"}


def test_rendered_manifests_pass_server_side_dry_run(helm, controlplane) -> None:
    ns = "cf-chart-dry"
    controlplane.kubectl("create", "namespace", ns)
    scenarios = [(chart, values) for chart in (OPERATOR_CHART, STACK_CHART) for values in _ci_values(chart)]
    for chart, values in scenarios:
        # Prometheus' ServiceMonitor CRD is not installed here: the dry-run leaves it out.
        rendered = helm(
            "template",
            "dry",
            str(chart),
            "-n",
            ns,
            "-f",
            str(values),
            "--set",
            "metrics.serviceMonitor.enabled=false" if chart == OPERATOR_CHART else "fleet.name=dry",
        ).stdout
        docs = _docs(rendered)
        kinds = {d["kind"] for d in docs}
        assert "ServiceMonitor" not in kinds
        # As `helm install -n` does: the release namespace where a template names none; the namespaces the
        # operator watches (its RoleBindings') exist.
        for doc in docs:
            if doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"].setdefault("namespace", ns)
        for other in {d["metadata"].get("namespace") for d in docs} - {None, ns}:
            controlplane.kubectl("create", "namespace", other)
        proc = controlplane.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump_all(docs))
        assert proc.returncode == 0, f"{chart.name} with {values.name} refused by the API server:\n{proc.stderr}"
        if chart == OPERATOR_CHART:
            assert {"Deployment", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Service", "Pod"} <= kinds

    with_monitor = _docs(helm("template", "mon", str(OPERATOR_CHART), "--set", "metrics.serviceMonitor.enabled=true").stdout)
    monitor = next(d for d in with_monitor if d["kind"] == "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1" and monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert not any(d["kind"] == "ServiceMonitor" for d in _docs(helm("template", "mon", str(OPERATOR_CHART)).stdout))

    namespaced = _docs(
        helm(
            "template", "ns", str(OPERATOR_CHART), "--set", "watchNamespaces={a,b}", "--set", "allowedImages={registry.example.com/vision/}"
        ).stdout
    )
    deployment = next(d for d in namespaced if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:4] == ["--namespace", "a", "--namespace", "b"]
    assert {"name": "CAMERAFLEET_ALLOWED_IMAGES", "value": "registry.example.com/vision/"} in container["env"]
    assert sorted(d["metadata"]["namespace"] for d in namespaced if d["kind"] == "RoleBinding") == ["a", "b"]
    assert [d["metadata"]["name"] for d in namespaced if d["kind"] == "ClusterRoleBinding"] == ["ns-camerafleet-operator-cluster"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {"name": "CAMERAFLEET_RESYNC_SECONDS", "value": "30"} in container["env"]


def test_the_prometheus_rule_ships_the_plain_rules_file_only_when_enabled(helm) -> None:
    rendered = _docs(
        helm("template", "al", str(STACK_CHART), "--set", "prometheusRule.enabled=true", "--set", "prometheusRule.labels.release=kp").stdout
    )
    rule = next(d for d in rendered if d["kind"] == "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["metadata"]["labels"]["release"] == "kp"
    # Prometheus' own {{ $labels.x }} templates pass through helm untouched: the spec is the file, verbatim.
    assert rule["spec"] == yaml.safe_load((STACK_CHART / "alerts" / "camerafleet.rules.yaml").read_text())
    assert not any(d["kind"] == "PrometheusRule" for d in _docs(helm("template", "al", str(STACK_CHART)).stdout))


def test_the_pod_monitor_scrapes_every_fleets_ray_pods_only_when_enabled(helm) -> None:
    rendered = _docs(helm("template", "pm", str(STACK_CHART), "--set", "podMonitor.enabled=true").stdout)
    monitor = next(d for d in rendered if d["kind"] == "PodMonitor")
    # The label the operator puts on every Ray Pod (render.pod_labels) and KubeRay's metrics port name.
    assert monitor["spec"]["selector"] == {"matchExpressions": [{"key": LABEL_FLEET, "operator": "Exists"}]}
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    only = _docs(
        helm("template", "pm", str(STACK_CHART), "--set", "podMonitor.enabled=true", "--set", "podMonitor.namespaces={cams}").stdout
    )
    assert next(d for d in only if d["kind"] == "PodMonitor")["spec"]["namespaceSelector"] == {"matchNames": ["cams"]}
    assert not any(d["kind"] == "PodMonitor" for d in _docs(helm("template", "pm", str(STACK_CHART)).stdout))


def test_kafka_keeps_its_log_below_the_volume_root(helm) -> None:
    """Kafka takes every directory in its log dir for a partition: on a fresh ext4 volume the root holds
    lost+found, and a broker whose log dir is the root refuses to start."""
    stack = _docs(helm("template", "st", str(STACK_CHART), "--set", "fleet.name=st").stdout)
    kafka = next(d for d in stack if d["kind"] == "StatefulSet" and d["spec"]["template"]["spec"]["containers"][0]["name"] == "kafka")
    container = kafka["spec"]["template"]["spec"]["containers"][0]
    log_dirs = next(e["value"] for e in container["env"] if e["name"] == "KAFKA_LOG_DIRS")
    mount = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "data")
    assert log_dirs.startswith(mount.rstrip("/") + "/"), f"log dir {log_dirs} is the volume's root {mount}"


@pytest.mark.parametrize(
    ("setting", "names"),
    [
        ("replicaCount=-1", "replicaCount"),
        ("replicaCount=abc", "replicaCount"),
        ("unknownKey=1", "unknownKey"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
    ],
)
def test_wrong_values_are_refused(helm, setting, names) -> None:
    proc = helm("template", "bad", str(OPERATOR_CHART), "--set", setting, check=False)
    assert proc.returncode != 0, f"helm accepted --set {setting}"
    assert names in proc.stderr and "values don't meet the specifications of the schema" in proc.stderr, proc.stderr


def test_stack_refuses_unknown_keys(helm) -> None:
    proc = helm("template", "bad", str(STACK_CHART), "--set", "kafka.replicas=3", check=False)
    assert proc.returncode != 0 and "replicas" in proc.stderr, proc.stderr


def _readme_crd_upgrade() -> list[str]:
    """The README's CRD upgrade step, as its words say it (a line break inside the command is a space)."""
    found = re.search(r"`(kubectl apply --server-side[^`]*)`", (ROOT / "README.md").read_text())
    assert found, "the README no longer says how to upgrade the CRD"
    return found.group(1).split()


def test_the_readmes_crd_upgrade_changes_the_crd_helm_created(helm, controlplane, tmp_path) -> None:
    """A first `helm install` creates the chart's `crds/` with helm as the fields' manager, and never upgrades them;
    the README's step that applies the next release's CRD must take those fields over. Plain server-side apply is
    refused there ("conflict with helm ... .spec.versions", seen in an e2e run whose first install was helm's).
    The CRD goes under a group of its own here, so the control plane's CameraFleet CRD stays as it is."""
    group = "crd-upgrade.camerafleet.io"
    crd = yaml.safe_load(next((OPERATOR_CHART / "crds").glob("*.yaml")).read_text())
    crd["spec"]["group"] = group
    crd["metadata"]["name"] = f"{crd['spec']['names']['plural']}.{group}"
    chart = tmp_path / "chart"
    (chart / "crds").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(yaml.safe_dump({"apiVersion": "v2", "name": "crd-upgrade", "version": "0.1.0"}))
    (chart / "crds" / "crd.yaml").write_text(yaml.safe_dump(crd))
    helm("install", "crd-upgrade", str(chart), "-n", "default")
    try:
        managers = {f["manager"] for f in _get_json(controlplane, "crd", crd["metadata"]["name"])["metadata"]["managedFields"]}
        assert "helm" in managers, managers
        columns = crd["spec"]["versions"][0].setdefault("additionalPrinterColumns", [])
        columns.insert(0, {"name": "Image", "type": "string", "jsonPath": ".spec.kubernetes.image"})
        (chart / "crds" / "crd.yaml").write_text(yaml.safe_dump(crd))
        command = _readme_crd_upgrade()
        assert command[-1] == "charts/camerafleet-operator/crds/", command
        proc = controlplane.kubectl(*command[1:-1], str(chart / "crds"))
        assert proc.returncode == 0, f"the README's `{' '.join(command)}` failed: {proc.stderr}"
        served = _get_json(controlplane, "crd", crd["metadata"]["name"])["spec"]["versions"][0]
        assert served["additionalPrinterColumns"][0]["name"] == "Image", served["additionalPrinterColumns"]
    finally:
        helm("uninstall", "crd-upgrade", "-n", "default", check=False)
        controlplane.kubectl("delete", "crd", crd["metadata"]["name"], "--wait=false")


def _get_json(controlplane, kind: str, name: str) -> dict:
    proc = controlplane.kubectl("get", kind, name, "-o", "json", "--show-managed-fields")
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except OSError:
        return 0, ""


@pytest.fixture(scope="module")
def installed(helm, controlplane, tmp_path_factory) -> Iterator[None]:
    proc = helm(
        "install",
        RELEASE,
        str(OPERATOR_CHART),
        "-n",
        INSTALL_NS,
        "--create-namespace",
        "--set",
        f"watchNamespaces={{{INSTALL_NS}}}",
        "--set",
        "resyncSeconds=3",
    )
    assert "kubectl apply -f examples/cluster-fleet.yaml" in proc.stdout, "NOTES say what to do next"
    assert "helm install kuberay-operator kuberay/kuberay-operator --version 1.6.0" in proc.stdout
    yield
    helm("uninstall", "stack", "-n", INSTALL_NS, check=False)
    helm("uninstall", RELEASE, "-n", INSTALL_NS, check=False)
    controlplane.kubectl("delete", "namespace", INSTALL_NS, "--wait=false")


def test_install_creates_the_operator_objects(installed, controlplane) -> None:
    def get(kind: str, name: str, *ns: str) -> dict:
        proc = controlplane.kubectl("get", kind, name, *ns, "-o", "json")
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    deployment = get("deployment", FULLNAME, "-n", INSTALL_NS)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/camerafleet/camerafleet-operator:0.1.0"
    assert container["args"][:2] == ["--namespace", INSTALL_NS]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == FULLNAME
    get("serviceaccount", FULLNAME, "-n", INSTALL_NS)
    service = get("service", f"{FULLNAME}-metrics", "-n", INSTALL_NS)
    assert {p["port"] for p in service["spec"]["ports"]} == {9090, 8080}
    shipped = chart_files.role_rules()
    for role_name, installed_name in (("camerafleet-operator", FULLNAME), ("camerafleet-operator-cluster", f"{FULLNAME}-cluster")):
        role = get("clusterrole", installed_name)
        normalized = [{k: v for k, v in r.items() if k in ("apiGroups", "resources", "verbs")} for r in role["rules"]]
        assert normalized == shipped[role_name], installed_name
    subject = [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": INSTALL_NS}]
    assert get("clusterrolebinding", f"{FULLNAME}-cluster")["subjects"] == subject
    # Issue 24: with watchNamespaces the rights to change things are bound in those namespaces only.
    assert get("rolebinding", FULLNAME, "-n", INSTALL_NS)["subjects"] == subject
    assert controlplane.kubectl("get", "clusterrolebinding", FULLNAME).returncode != 0, "no cluster-wide binding of the write rules"
    account = f"system:serviceaccount:{INSTALL_NS}:{FULLNAME}"

    def can(*args: str) -> bool:
        return controlplane.kubectl("auth", "can-i", *args, f"--as={account}").stdout.strip() == "yes"

    assert can("create", "rayjobs.ray.io", "-n", INSTALL_NS) and can("patch", "configmaps", "-n", INSTALL_NS)
    assert can("list", "camerafleets.camerafleet.io", "--all-namespaces"), "reads every fleet (topic claims across namespaces)"
    for verb, resource in (("create", "rayjobs.ray.io"), ("patch", "configmaps"), ("create", "roles.rbac.authorization.k8s.io")):
        assert not can(verb, resource, "-n", "default"), f"{verb} {resource} outside the watched namespaces"
    assert not can("patch", "camerafleets.camerafleet.io", "-n", "default")
    # The fleet's Ray token: created in a fleet's namespace, never read (no Secret is the operator's to see).
    assert can("create", "secrets", "-n", INSTALL_NS) and can("create", "networkpolicies.networking.k8s.io", "-n", INSTALL_NS)
    for verb in ("get", "list", "watch", "patch"):
        assert not can(verb, "secrets", "-n", INSTALL_NS), f"{verb} secrets"


def test_a_fleet_names_only_the_secrets_and_account_its_author_may_use(installed, controlplane) -> None:
    """The chart's admission policy, enforced by the real API server as whoever applies a fleet: a user allowed to
    write CameraFleets but to read only one Secret cannot mount another one, nor run the fleet as a ServiceAccount
    they may not act as, through the operator; references a change leaves alone are not checked again, so the
    author can edit a fleet an admin set up, and the operator can write its annotations."""
    ns, user = INSTALL_NS, "alice"
    for args in (
        ["create", "secret", "generic", "fleet-s3", "--from-literal=AWS_ACCESS_KEY_ID=fleet"],
        ["create", "secret", "generic", "payroll-db", "--from-literal=PASSWORD=not-the-fleets"],
        ["create", "secret", "generic", "audit-ca", "--from-literal=ca.crt=not-the-fleets"],
        ["create", "serviceaccount", "deployer"],
        ["create", "role", "fleet-author", "--verb=get,list,create,update,patch", "--resource=camerafleets.camerafleet.io"],
        ["create", "role", "read-fleet-s3", "--verb=get", "--resource=secrets", "--resource-name=fleet-s3"],
        ["create", "rolebinding", "alice-fleets", "--role=fleet-author", f"--user={user}"],
        ["create", "rolebinding", "alice-fleet-s3", "--role=read-fleet-s3", f"--user={user}"],
    ):
        controlplane.kubectl(*args, "-n", ns, check=True)

    def apply(kubernetes: dict, as_user: str | None = user, cameras: int = 1) -> subprocess.CompletedProcess:
        spec = {
            "cameras": [{"id": f"c{i}", "source": "synthetic:"} for i in range(cameras)],
            "models": [{"name": "faces", "type": "face", "modelUri": "/opt/camerafleet/models/centerface.onnx"}],
            "kafka": {"bootstrapServers": "kafka:9092"},
            "kubernetes": kubernetes,
        }
        doc = {"apiVersion": "camerafleet.io/v1alpha1", "kind": "CameraFleet", "metadata": {"name": "refs", "namespace": ns}, "spec": spec}
        who = [f"--as={as_user}"] if as_user else []
        return controlplane.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", *who, input=json.dumps(doc))

    def refused(proc: subprocess.CompletedProcess, *words: str) -> bool:
        return proc.returncode != 0 and "denied request" in proc.stderr and all(w in proc.stderr for w in words)

    try:
        proc = apply({"envFromSecrets": ["fleet-s3", "payroll-db"]})
        assert refused(proc, "Secrets new to this fleet (fleet-s3, payroll-db) that alice may not all read"), proc.stderr
        assert controlplane.kubectl("get", "camerafleet", "refs", "-n", ns).returncode != 0, "a refused fleet was stored"
        assert refused(apply({"caSecret": "payroll-db"}), "(payroll-db) that alice may not all read")
        assert refused(apply({"serviceAccountName": "deployer"}), "serviceAccountName deployer", "may not act as")
        proc = apply({"envFromSecrets": ["fleet-s3"]})
        assert proc.returncode == 0, proc.stderr
        # An admin adds what the author could not; the author's later edits keep those references and pass.
        proc = apply({"envFromSecrets": ["fleet-s3", "payroll-db"], "serviceAccountName": "deployer"}, as_user=None)
        assert proc.returncode == 0, proc.stderr
        proc = apply({"envFromSecrets": ["fleet-s3", "payroll-db"], "serviceAccountName": "deployer"}, cameras=2)
        assert proc.returncode == 0, proc.stderr
        assert refused(apply({"envFromSecrets": ["fleet-s3", "payroll-db"], "caSecret": "audit-ca"}), "(audit-ca) that alice")
        operator = f"system:serviceaccount:{ns}:{FULLNAME}"
        proc = controlplane.kubectl("annotate", "camerafleet", "refs", "-n", ns, "kopf.zalando.org/touch=1", f"--as={operator}")
        assert proc.returncode == 0, f"the operator's own write of a fleet it cannot read the Secrets of: {proc.stderr}"
        # A namespace editor (the built-in edit role: reads Secrets, impersonates ServiceAccounts) may name both.
        controlplane.kubectl("create", "rolebinding", "bob-edit", "--clusterrole=edit", "--user=bob", "-n", ns, check=True)
        controlplane.kubectl("create", "rolebinding", "bob-fleets", "--role=fleet-author", "--user=bob", "-n", ns, check=True)
        controlplane.kubectl("delete", "camerafleet", "refs", "-n", ns, check=True)
        proc = apply({"envFromSecrets": ["payroll-db"], "serviceAccountName": "deployer"}, as_user="bob")
        assert proc.returncode == 0, proc.stderr
    finally:
        controlplane.kubectl("delete", "camerafleet", "refs", "-n", ns, "--ignore-not-found")


def _operator_panels_have_data(prom, started: float) -> None:
    queries = [q for q in dashboard_queries("charted", SCRAPE_S) if q.from_operator]
    assert queries, "the dashboard has no operator panel"
    prom.wait_for_targets_up(60)
    deadline = time.monotonic() + 120  # a few resyncs (3 s) and scrapes (2 s); generous for a loaded machine
    while True:
        problems = [p for q in queries if (p := empty_or_unlabelled(prom, q, started, time.time(), SCRAPE_S))]
        if not problems:
            return
        assert time.monotonic() < deadline, "operator panels without data:\n" + "\n".join(problems)
        time.sleep(3)


def test_chart_service_account_runs_the_operator(installed, helm, controlplane, kafka_server, tmp_path, prometheus) -> None:
    """The operator, with exactly the RBAC the chart grants, reconciles the stack chart's example fleet; a real
    Prometheus scraping it gets data for every operator panel of the dashboard and sees the fleet, not yet
    Running, as a pending CameraFleetNotReady alert."""
    kubeconfig = controlplane.service_account_kubeconfig(INSTALL_NS, FULLNAME, tmp_path / "kubeconfig")
    health_port, metrics_port = _free_port(), _free_port()
    log = tmp_path / "operator.log"
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "CAMERAFLEET_RESYNC_SECONDS": "3", "CAMERAFLEET_ALLOW_LOCAL_ADDRESSES": "1"}
    with open(log, "ab") as sink:
        operator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "camerafleet_operator",
                "--namespace",
                INSTALL_NS,
                "--liveness",
                f"http://127.0.0.1:{health_port}/healthz",
                "--metrics-port",
                str(metrics_port),
            ],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    prom = prometheus({"operator": [f"127.0.0.1:{metrics_port}"]}, rule_files=[RULES])
    started = time.time()
    try:
        helm(
            "install",
            "stack",
            str(STACK_CHART),
            "-n",
            INSTALL_NS,
            "--set",
            f"kafka.external.bootstrapServers={kafka_server.bootstrap}",
            "--set",
            "s3.external.endpoint=http://s3.invalid:9000",
            "--set",
            "fleet.enabled=true",
            "--set",
            "fleet.name=charted",
            "--set",
            "fleet.kafka.topicPrefix=charted_cam_",
            "--set",
            "fleet.kafka.resultsTopic=charted_results",
            "--set",
            "fleet.kafka.deadLetterTopic=charted_dead",
            "--set",
            "grafanaDashboard.enabled=false",
        )
        deadline = time.monotonic() + 180  # a reconcile takes seconds idle; the API server and operator share 2 busy cores
        condition: dict = {}
        while time.monotonic() < deadline:
            proc = controlplane.kubectl("get", "camerafleet", "charted", "-n", INSTALL_NS, "-o", "json")
            if proc.returncode == 0:
                conditions = (json.loads(proc.stdout).get("status") or {}).get("conditions") or []
                condition = next((c for c in conditions if c["type"] == "TopicsReady"), {})
                if condition.get("status") == "True":
                    break
            assert operator.poll() is None, f"the operator exited:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        assert condition.get("status") == "True", f"TopicsReady never True: {condition}\n{log.read_text()[-3000:]}"
        rayservice = controlplane.kubectl("get", "rayservice", "charted-serving", "-n", INSTALL_NS, "-o", "json")
        assert rayservice.returncode == 0, rayservice.stderr
        assert _get(f"http://127.0.0.1:{health_port}/healthz")[0] == 200
        _operator_panels_have_data(prom, started)
        # The fleet cannot be Running here (no KubeRay to run its Pods): the not-Ready alert is pending for it.
        pending = [a for a in prom.api("alerts")["alerts"] if a["labels"].get("alertname") == "CameraFleetNotReady"]
        assert [(a["labels"]["fleet"], a["state"]) for a in pending] == [("charted", "pending")], pending
        # uninstalled while the operator runs, so that it can release the fleet (finalizer)
        helm("uninstall", "stack", "-n", INSTALL_NS, "--wait", "--timeout", "60s")
        gone = controlplane.kubectl("get", "camerafleet", "charted", "-n", INSTALL_NS, "--ignore-not-found", "-o", "name")
        assert gone.stdout.strip() == ""
        status, text = _get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert status == 200 and 'result="ok"' in text
        assert f'camerafleet_operator_fleet_phase{{namespace="{INSTALL_NS}",fleet="charted"' not in text, "a deleted fleet keeps its phase"
    finally:
        operator.terminate()
        operator.wait(timeout=30)
    text = log.read_text()
    assert "Traceback" not in text, f"the operator logged a traceback:\n{text[-4000:]}"
    # Any refusal means the chart's RBAC lacks a permission the operator needs.
    refused = [line for line in text.splitlines() if "Forbidden" in line]
    assert not refused, "the chart's RBAC is missing a permission:\n" + "\n".join(refused[-5:])
