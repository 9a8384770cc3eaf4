"""Faults around the operator, against the real servers: the API server restarting under it, Kafka
going away in the middle of a reconcile, the operator itself killed between two reconcile passes, and a
camera whose URL carries a password.

Each fault must end the way a person running the operator would want: no crash, a status condition and
an Event that say what is wrong, recovery on its own once the fault is gone, and never a duplicated
object. The operator runs as its own process with exactly the shipped RBAC (a ServiceAccount bound to
`operator/config/rbac/role.yaml`, which the Helm chart copies), watching only this module's namespace,
with its liveness endpoint on, so a blocked event loop shows up as a slow or failing probe. It talks to
a Kafka broker of its own, so stopping that broker disturbs no other test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from camerafleet_dev.devservers import kafka as kafka_mod
from camerafleet_dev.devservers._process import free_port
from camerafleet_dev.devservers.kafka import KafkaServer
from tests.controlplane.test_operator import Cluster, fleet, kafka_topics, operator_kubeconfig, wait_for
from tests.fixtures.servers import _ensure_fetched

pytestmark = [pytest.mark.controlplane, pytest.mark.faults]

NS = "cf-faults"
PASSWORD = "S3cr3tPa55"
# The kubelet restarts the operator when its liveness probe does not answer within the chart's timeout: that is
# the bound a blocked event loop must stay under, whatever the machine's speed.
CHART_VALUES = Path(__file__).resolve().parents[2] / "charts" / "camerafleet-operator" / "values.yaml"
LIVENESS_TIMEOUT_S = float(yaml.safe_load(CHART_VALUES.read_text())["livenessProbe"]["timeoutSeconds"])


class Operator:
    """The operator as a process of its own (SIGKILL-able), with its log and liveness endpoint."""

    def __init__(self, env: dict[str, str], log: Path):
        self.env, self.log = env, log
        self.liveness_port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "camerafleet_operator",
                "--namespace",
                NS,
                "--liveness",
                f"http://127.0.0.1:{self.liveness_port}/healthz",
                "--metrics-port",
                "0",
            ],
            env=self.env,
            stdout=open(self.log, "ab"),
            stderr=subprocess.STDOUT,
        )
        wait_for("the operator's liveness endpoint", lambda: self.healthz(timeout_s=1) is not None, timeout_s=120)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def healthz(self, timeout_s: float = 5) -> float | None:
        """Seconds the liveness probe took, None when it failed."""
        started = time.monotonic()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=timeout_s) as r:
                return time.monotonic() - started if r.status == 200 else None
        except OSError:
            return None


@dataclass
class Probes:
    latencies_s: list[float] = field(default_factory=list)
    failures: int = 0

    def describe(self) -> str:
        worst = max(self.latencies_s, default=0.0)
        return f"liveness {len(self.latencies_s)} ok / {self.failures} failed, slowest {worst * 1000:.0f} ms"


@contextmanager
def probing(op: Operator, interval_s: float = 0.25) -> Iterator[Probes]:
    """Probe the liveness endpoint (as the kubelet would) for as long as the block runs."""
    probes, stop = Probes(), threading.Event()

    def loop() -> None:
        while not stop.is_set():
            took = op.healthz(timeout_s=LIVENESS_TIMEOUT_S)
            if took is None:
                probes.failures += 1
            else:
                probes.latencies_s.append(took)
            stop.wait(interval_s)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield probes
    finally:
        stop.set()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def own_kafka(request, tmp_path_factory) -> Iterator[KafkaServer]:
    """A broker for this module alone: stopping it disturbs no other test."""
    _ensure_fetched(request.config, "Kafka", kafka_mod.is_fetched, kafka_mod.fetch_kafka)
    server = KafkaServer(tmp_path_factory.mktemp("faults-kafka"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def op_cluster(controlplane, own_kafka, tmp_path_factory) -> Iterator[tuple[Cluster, Operator]]:
    c = Cluster(controlplane, ns=NS)
    tmp = tmp_path_factory.mktemp("operator-faults")
    kubeconfig = operator_kubeconfig(controlplane, c, tmp)
    op = Operator(
        {**os.environ, "KUBECONFIG": str(kubeconfig), "CAMERAFLEET_RESYNC_SECONDS": "3", "CAMERAFLEET_ALLOW_LOCAL_ADDRESSES": "1"},
        tmp / "operator.log",
    )
    op.start()
    yield c, op
    if op.alive():
        op.proc.terminate()
        op.proc.wait(timeout=30)
    text = op.log.read_text()
    assert "Traceback" not in text, f"the operator logged a traceback:\n{text[-6000:]}"


def fleet_in_ns(name: str, bootstrap: str, **kwargs) -> dict:
    obj = fleet(name, bootstrap, **kwargs)
    obj["metadata"]["namespace"] = NS
    return obj


def owned_counts(c: Cluster, name: str) -> dict[str, int]:
    counts = {}
    for kind in ("configmaps", "rayservices", "rayjobs"):
        out = c.kubectl("get", kind, "-n", NS, "-l", f"camerafleet.io/fleet={name}", "-o", "json").stdout
        counts[kind] = len(json.loads(out)["items"])
    return counts


def events_of(c: Cluster, name: str) -> list[dict]:
    out = c.kubectl("get", "events", "-n", NS, "--field-selector", f"involvedObject.name={name}", "-o", "json").stdout
    return json.loads(out)["items"]


def status_of(c: Cluster, name: str) -> dict:
    return (c.get("camerafleet", name) or {}).get("status") or {}


def condition_is(c: Cluster, name: str, type_: str, status: str, reason: str | None = None) -> dict | None:
    cond = c.condition(name, type_)
    if cond and cond["status"] == status and (reason is None or cond["reason"] == reason):
        return cond
    return None


def image(obj: dict) -> str:
    spec = obj["spec"].get("rayClusterSpec") or obj["spec"]["rayClusterConfig"]
    return spec["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]


def configmap_cameras(c: Cluster, name: str) -> int:
    cm = c.get("configmap", f"{name}-config")
    return len(yaml.safe_load(cm["data"]["fleet.yaml"])["spec"]["cameras"]) if cm else 0


def test_api_server_restart_watches_reconnect_and_converge(op_cluster, controlplane, own_kafka, fault_report):
    c, op = op_cluster
    row = fault_report.row(
        "kube-apiserver restarted while the operator runs; spec changed (2 -> 3 cameras) right after",
        "operator keeps running, reconnects its watches, converges the new spec; exactly 1 ConfigMap, 1 RayService, 2 RayJobs",
    )
    k = own_kafka.bootstrap
    assert c.apply(fleet_in_ns("restart", k)).returncode == 0
    c.serving_then_consumer("restart")
    wait_for("first reconcile", lambda: status_of(c, "restart").get("cameras") == 2 and condition_is(c, "restart", "TopicsReady", "True"))

    log_before = len(op.log.read_bytes())
    with probing(op) as probes:
        started = time.monotonic()
        controlplane.restart_apiserver()
        restart_s = time.monotonic() - started
        assert c.apply(fleet_in_ns("restart", k, cameras=3)).returncode == 0
        changed = time.monotonic()
        wait_for("the spec change made after the restart", lambda: status_of(c, "restart").get("cameras") == 3, timeout_s=180)
        converge_s = time.monotonic() - changed
    # ... and stays converged: no reconcile begun on the old spec (a resync timer racing the update
    # handler) puts the old ConfigMap back. Watched over two resync periods.
    seen = set()
    until = time.monotonic() + 6.5
    while time.monotonic() < until:
        seen.add(configmap_cameras(c, "restart"))
    counts = owned_counts(c, "restart")
    log_after = op.log.read_bytes()[log_before:].decode(errors="replace")
    api_retries = log_after.count("failed temporarily: the Kubernetes API")
    row.happened = (
        f"API server down and back in {restart_s:.1f} s; operator alive: {op.alive()}; the new spec converged "
        f"{converge_s:.1f} s after it was applied (ConfigMap cameras over the next 6.5 s: {sorted(seen)}); objects {counts}; "
        f"{probes.describe()}; {api_retries} handler call(s) retried as temporary API errors, "
        f"{log_after.count('Traceback')} traceback(s) logged"
    )
    assert op.alive(), "the operator exited when the API server restarted"
    assert "Traceback" not in log_after, log_after[-4000:]
    assert seen == {3}, f"the ConfigMap went back to an older spec: {seen}"
    assert "restart_cam_3" in kafka_topics(k, ["restart_cam_3"])
    assert counts == {"configmaps": 1, "rayservices": 1, "rayjobs": 2}
    c.kubectl("delete", "camerafleet", "restart", "-n", NS)


def test_kafka_outage_is_reported_retried_and_recovered(op_cluster, own_kafka, fault_report):
    c, op = op_cluster
    row = fault_report.row(
        "Kafka broker stopped, then a spec change (2 -> 3 cameras) needs a new topic; broker started again",
        "temporary error retried with backoff (operator alive, liveness answering), TopicsReady=False reason KafkaUnavailable "
        "naming the broker, a Warning Event; Kubernetes objects still reconciled; topics created once Kafka is back",
    )
    k = own_kafka.bootstrap
    assert c.apply(fleet_in_ns("outage", k)).returncode == 0
    c.serving_then_consumer("outage")
    wait_for("topics ready", lambda: condition_is(c, "outage", "TopicsReady", "True"), timeout_s=180)

    with probing(op) as probes:
        own_kafka.stop()
        stopped = time.monotonic()
        assert c.apply(fleet_in_ns("outage", k, cameras=3)).returncode == 0
        cond = wait_for("KafkaUnavailable", lambda: condition_is(c, "outage", "TopicsReady", "False", "KafkaUnavailable"), timeout_s=180)
        reported_s = time.monotonic() - stopped
        # Everything that does not need Kafka still follows the spec while it is away.
        wait_for("ConfigMap updated during the outage", lambda: configmap_cameras(c, "outage") == 3, timeout_s=120)
        during = status_of(c, "outage")
        warnings = [e for e in events_of(c, "outage") if e["reason"] == "KafkaUnavailable"]
        # The update handler is retried by kopf (a temporary error), not given up on.
        annotations = c.get("camerafleet", "outage")["metadata"].get("annotations") or {}
        progress = {key: json.loads(v) for key, v in annotations.items() if key.startswith("camerafleet.io/reconcile")}
        alive_during = op.alive()
        own_kafka.start()
        restarted = time.monotonic()
        wait_for("TopicsReady again", lambda: condition_is(c, "outage", "TopicsReady", "True"), timeout_s=180)
        recovered_s = time.monotonic() - restarted
    topics = kafka_topics(k, ["outage_cam_1", "outage_cam_2", "outage_cam_3"])
    retries = max((p.get("retries") or 0 for p in progress.values()), default=0)
    row.happened = (
        f"TopicsReady=False/{cond['reason']} {reported_s:.1f} s after the broker stopped ('{cond['message'][:120]}'); "
        f"phase {during.get('phase')}; {len(warnings)} Warning Event(s) KafkaUnavailable; kopf retry state {progress or 'none'}; "
        f"ConfigMap followed the spec during the outage; operator alive: {alive_during}; {probes.describe()}; "
        f"TopicsReady=True {recovered_s:.1f} s after the broker came back, topics now {sorted(topics)}"
    )
    assert alive_during and op.alive()
    assert k in cond["message"] and "retrying" in cond["message"]
    assert during["phase"] == "Degraded"
    assert warnings and all(e["type"] == "Warning" for e in warnings), events_of(c, "outage")
    assert progress and retries >= 1, f"the update handler is not being retried: {annotations}"
    assert probes.failures == 0 and probes.latencies_s, probes.describe()
    assert sorted(topics) == ["outage_cam_1", "outage_cam_2", "outage_cam_3"]
    assert owned_counts(c, "outage") == {"configmaps": 1, "rayservices": 1, "rayjobs": 2}
    c.kubectl("delete", "camerafleet", "outage", "-n", NS)


def test_operator_killed_between_passes_converges_without_duplicates(op_cluster, own_kafka, fault_report):
    c, op = op_cluster
    row = fault_report.row(
        "operator SIGKILLed mid-reconcile: a spec change replaces both RayJobs (delete, then recreate on the next pass) "
        "and the operator dies right after the delete; restarted",
        "after the restart the fleet converges on the new spec: exactly 1 ConfigMap, 1 RayService, 2 RayJobs (new image)",
    )
    k = own_kafka.bootstrap
    assert c.apply(fleet_in_ns("killed", k)).returncode == 0
    c.serving_then_consumer("killed")
    wait_for("first reconcile", lambda: status_of(c, "killed").get("cameras") == 2)
    old_uid = c.get("rayjob", "killed-producer")["metadata"]["uid"]
    old_hash = c.get("rayjob", "killed-producer")["metadata"]["annotations"]["camerafleet.io/spec-hash"]

    changed = fleet_in_ns("killed", k, cameras=4)
    changed["spec"]["kubernetes"]["image"] = "ghcr.io/camerafleet/camerafleet-ray:0.1.1"  # RayJob specs change: replaced
    assert c.apply(changed).returncode == 0
    wait_for(
        "the old RayJob deleted",
        lambda: (j := c.get("rayjob", "killed-producer")) is None or j["metadata"]["uid"] != old_uid,
        timeout_s=120,
        interval_s=0.05,
    )
    op.kill()
    at_kill = {
        "rayjobs": [j for j in ("killed-producer", "killed-consumer") if c.get("rayjob", j)],
        "status_cameras": status_of(c, "killed").get("cameras"),
    }

    op.start()
    restarted = time.monotonic()
    wait_for(
        "converged after the restart",
        lambda: (
            status_of(c, "killed").get("cameras") == 4
            and all(
                (j := c.get("rayjob", n)) and j["metadata"]["annotations"]["camerafleet.io/spec-hash"] != old_hash
                for n in ("killed-producer", "killed-consumer")
            )
        ),
        timeout_s=180,
    )
    images = {image(c.get("rayjob", n)) for n in ("killed-producer", "killed-consumer")} | {image(c.get("rayservice", "killed-serving"))}
    converge_s = time.monotonic() - restarted
    counts = owned_counts(c, "killed")
    row.happened = (
        f"killed with RayJobs present {at_kill['rayjobs']} and status.cameras {at_kill['status_cameras']}; "
        f"converged {converge_s:.1f} s after the restart: ConfigMap {configmap_cameras(c, 'killed')} cameras, images {images}, objects {counts}"
    )
    assert images == {"ghcr.io/camerafleet/camerafleet-ray:0.1.1"}
    assert configmap_cameras(c, "killed") == 4
    assert counts == {"configmaps": 1, "rayservices": 1, "rayjobs": 2}
    c.kubectl("delete", "camerafleet", "killed", "-n", NS)


def test_camera_secret_never_reaches_status_events_or_objects(op_cluster, own_kafka, fault_report):
    c, op = op_cluster
    row = fault_report.row(
        f"camera URL with a password in a Secret (rtsp://admin:{PASSWORD[:2]}…@…) via sourceSecretEnv + kubernetes.envFromSecrets",
        "the password is in no CameraFleet status, Event, ConfigMap, RayService, RayJob or operator log line; "
        "Ray pods get it by reference (envFrom secretRef)",
    )
    secret_url = f"rtsp://admin:{PASSWORD}@10.0.0.7:554/stream1"
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "lobby-camera", "namespace": NS},
        "stringData": {"LOBBY_URL": secret_url},
    }
    assert c.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(secret)).returncode == 0
    obj = fleet_in_ns("secretive", own_kafka.bootstrap, cameras=1, kubernetes={"envFromSecrets": ["lobby-camera"]})
    obj["spec"]["cameras"] = [{"id": "lobby", "source": "lobby-entrance", "sourceSecretEnv": "LOBBY_URL"}]
    assert c.apply(obj).returncode == 0
    c.serving_then_consumer("secretive")
    wait_for("reconciled", lambda: condition_is(c, "secretive", "TopicsReady", "True"))

    searched: dict[str, str] = {
        "CameraFleet": c.kubectl("get", "camerafleet", "secretive", "-n", NS, "-o", "json").stdout,
        "Events": json.dumps(events_of(c, "secretive")),
        "describe": c.kubectl("describe", "camerafleet", "secretive", "-n", NS).stdout,
        "operator log": op.log.read_text(),
    }
    for kind in ("configmaps", "rayservices", "rayjobs"):
        searched[kind] = c.kubectl("get", kind, "-n", NS, "-l", "camerafleet.io/fleet=secretive", "-o", "json").stdout
    leaks = [where for where, text in searched.items() if PASSWORD in text]
    job = c.get("rayjob", "secretive-producer")
    env_from = [
        e for cont in job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"] for e in cont.get("envFrom", [])
    ]
    row.happened = (
        f"searched {len(searched)} places ({', '.join(searched)}, {sum(map(len, searched.values()))} characters): "
        f"password found in {leaks or 'none'}; producer head envFrom {env_from}"
    )
    assert not leaks
    assert {"secretRef": {"name": "lobby-camera"}} in env_from
    c.kubectl("delete", "camerafleet", "secretive", "-n", NS)
