"""The operator against a real kube-apiserver (with KubeRay's real CRDs, garbage collection by
kube-controller-manager) and a real Kafka broker, running with exactly the RBAC the project ships."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka.admin import AIOKafkaAdminClient

from camerafleet.api.manifest import MAX_CAMERAS, manifest_from_text
from camerafleet.api.pool_status import PoolStatus
from camerafleet.kube_api import KubeApi
from camerafleet.manifest_source import ConfigMapManifest, ManifestUnreadable
from camerafleet.status_writer import StatusWriter
from camerafleet.topics import TopicReconciler
from camerafleet_dev.generators import chart_files
from camerafleet_dev.generators.crd import CRD_PATH

pytestmark = pytest.mark.controlplane

ROOT = Path(__file__).resolve().parents[2]
NS = "cf-test"
OPERATOR_NS = "camerafleet-system"


def wait_for(what: str, check: Callable[[], Any], timeout_s: float = 120, interval_s: float = 0.5) -> Any:
    """`check`'s first true answer. The bound is generous: a reconcile takes a second on an idle machine, and the
    API server, etcd and the operator share 2 cores with whatever else runs; only a change that never comes fails."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except subprocess.CalledProcessError as err:
            last = err.stderr
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}; last: {last!r}")


class Cluster:
    def __init__(self, cp, ns: str = NS):
        self.cp = cp
        self.ns = ns

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        proc = self.cp.kubectl(*args, input=stdin) if stdin is not None else self.cp.kubectl(*args)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr}")
        return proc

    def get(self, kind: str, name: str, ns: str | None = None) -> dict | None:
        proc = self.kubectl("get", kind, name, "-n", ns or self.ns, "-o", "json", check=False)
        return json.loads(proc.stdout) if proc.returncode == 0 else None

    def apply(self, obj: dict) -> subprocess.CompletedProcess:
        return self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(obj), check=False)

    def kuberay_serves(self, fleet: str) -> None:
        """Write the RayService status KubeRay writes once the Serve app serves (no KubeRay runs here)."""
        ready = {
            "type": "Ready",
            "status": "True",
            "reason": "NonZeroServeEndpoints",
            "message": "",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }
        patch = json.dumps({"status": {"conditions": [ready]}})
        self.kubectl("patch", "rayservice", f"{fleet}-serving", "-n", self.ns, "--subresource=status", "--type=merge", "-p", patch)

    def serving_then_consumer(self, fleet: str) -> dict:
        """Once the RayService exists, play KubeRay's part and wait for the jobs the operator then applies."""
        wait_for(f"{fleet}-serving", lambda: self.get("rayservice", f"{fleet}-serving"))
        self.kuberay_serves(fleet)
        wait_for(f"{fleet}-producer", lambda: self.get("rayjob", f"{fleet}-producer"))
        return wait_for(f"{fleet}-consumer", lambda: self.get("rayjob", f"{fleet}-consumer"))

    def condition(self, name: str, type_: str) -> dict | None:
        fleet = self.get("camerafleet", name)
        conds = ((fleet or {}).get("status") or {}).get("conditions", [])
        return next((c for c in conds if c["type"] == type_), None)


def operator_kubeconfig(controlplane, c: Cluster, tmp: Path) -> Path:
    """CRD, namespaces and the shipped ClusterRole bound to the operator's ServiceAccount; its kubeconfig."""
    controlplane.apply_crd(CRD_PATH)
    for ns in (c.ns, OPERATOR_NS):
        c.kubectl("create", "namespace", ns, check=False)
    c.kubectl("apply", "-f", str(ROOT / "operator" / "config" / "rbac" / "role.yaml"))
    for role in ("camerafleet-operator", "camerafleet-operator-cluster"):  # the chart without watchNamespaces
        c.kubectl(
            "create",
            "clusterrolebinding",
            role,
            f"--clusterrole={role}",
            f"--serviceaccount={OPERATOR_NS}:camerafleet-operator",
            check=False,
        )
    return controlplane.service_account_kubeconfig(OPERATOR_NS, "camerafleet-operator", tmp / "kubeconfig")


@pytest.fixture(scope="module")
def cluster(controlplane, kafka_server, tmp_path_factory):
    """CRDs installed, the operator running as its own ServiceAccount with the shipped ClusterRole."""
    c = Cluster(controlplane)
    tmp = tmp_path_factory.mktemp("operator")
    sa_kubeconfig = operator_kubeconfig(controlplane, c, tmp)
    c.operator_log = tmp / "operator.log"
    env = {**os.environ, "KUBECONFIG": str(sa_kubeconfig), "CAMERAFLEET_RESYNC_SECONDS": "3", "CAMERAFLEET_ALLOW_LOCAL_ADDRESSES": "1"}

    def start():
        c.proc = subprocess.Popen(
            [sys.executable, "-m", "camerafleet_operator", "--all-namespaces", "--liveness", "", "--metrics-port", "0"],
            env=env,
            stdout=open(c.operator_log, "ab"),
            stderr=subprocess.STDOUT,
        )

    c.start_operator = start
    start()
    yield c
    c.proc.terminate()
    c.proc.wait(timeout=30)
    text = c.operator_log.read_text()
    assert "Traceback" not in text, f"the operator logged a traceback:\n{text[-4000:]}"


def fleet(name: str, bootstrap: str, cameras: int = 2, partitions: int = 2, **extra_spec) -> dict:
    spec = {
        "cameras": [{"id": str(i), "source": "synthetic:"} for i in range(1, cameras + 1)],
        "models": [
            {"name": "faces", "type": "face", "modelUri": "/opt/camerafleet/models/centerface.onnx", "batching": {"maxBatchSize": 8}}
        ],
        "kafka": {
            "bootstrapServers": bootstrap,
            "topicPrefix": f"{name}_cam_",
            "resultsTopic": f"{name}_results",
            "deadLetterTopic": f"{name}_dead",
            "partitionsPerTopic": partitions,
        },
        "kubernetes": {"jobRetryInitialSeconds": 1, "jobRetryMaxSeconds": 2},
    }
    for key, value in extra_spec.items():
        spec[key] = {**spec.get(key, {}), **value} if isinstance(value, dict) else value
    return {"apiVersion": "camerafleet.io/v1alpha1", "kind": "CameraFleet", "metadata": {"name": name, "namespace": NS}, "spec": spec}


def kafka_topics(bootstrap: str, names: list[str]):
    async def go():
        async with TopicReconciler(bootstrap) as t:
            return await t.describe(names)

    return asyncio.run(go())


def test_create_update_and_explain(cluster, kafka_server):
    k = kafka_server.bootstrap
    assert cluster.apply(fleet("alpha", k)).returncode == 0
    wait_for("TopicsReady", lambda: (cluster.condition("alpha", "TopicsReady") or {}).get("status") == "True")

    topics = kafka_topics(k, ["alpha_cam_1", "alpha_cam_2", "alpha_results", "alpha_dead"])
    assert {n: t.partitions for n, t in topics.items()} == {"alpha_cam_1": 2, "alpha_cam_2": 2, "alpha_results": 2, "alpha_dead": 1}
    assert topics["alpha_cam_1"].configs["retention.ms"] == "600000"

    cm = cluster.get("configmap", "alpha-config")
    assert yaml.safe_load(cm["data"]["fleet.yaml"])["spec"]["serving"]["url"] == f"http://alpha-serving-serve-svc.{NS}.svc:8000/infer"
    svc = cluster.get("rayservice", "alpha-serving")
    serve = yaml.safe_load(svc["spec"]["serveConfigV2"])["applications"][0]
    assert next(d for d in serve["deployments"] if d["name"] == "model-faces")["max_ongoing_requests"] == 18
    status = cluster.get("camerafleet", "alpha")["status"]
    assert status["observedGeneration"] == 1 and status["cameras"] == 2
    assert status["phase"] == "Reconciling", "without a KubeRay operator, serving and jobs wait"
    assert cluster.condition("alpha", "ServingReady")["reason"] == "WaitingForKubeRay"
    assert (
        cluster.condition("alpha", "ConsumersRunning")["reason"]
        == cluster.condition("alpha", "ProducersRunning")["reason"]
        == "WaitingForServing"
    )
    assert cluster.get("rayjob", "alpha-consumer") is None and cluster.get("rayjob", "alpha-producer") is None, (
        "jobs wait for the Serve app"
    )
    cluster.serving_then_consumer("alpha")
    for role, console in (("producer", " --console-port 8090 --console-host 0.0.0.0"), ("consumer", "")):
        job = cluster.get("rayjob", f"alpha-{role}")
        assert job["spec"]["entrypoint"] == f"camerafleet run /etc/camerafleet/fleet.yaml --role {role} --metrics-port 8081{console}"
        assert job["metadata"]["ownerReferences"][0]["kind"] == "CameraFleet"
    # The console's Service, created by the operator with its least-privilege role (the API server checks it).
    console_svc = cluster.get("service", "alpha-console")
    assert console_svc["spec"]["type"] == "ClusterIP" and console_svc["spec"]["ports"][0]["port"] == 8090
    assert console_svc["spec"]["selector"] == {"camerafleet.io/console": "alpha", "ray.io/node-type": "head"}
    assert console_svc["metadata"]["ownerReferences"][0]["kind"] == "CameraFleet"
    table = cluster.kubectl("get", "camerafleets", "-n", NS).stdout
    assert "CAMERAS" in table and "PHASE" in table and "READY" in table and "alpha" in table
    described = cluster.kubectl("describe", "camerafleet", "alpha", "-n", NS).stdout
    assert "TopicsReady" in described and "Events:" in described
    explained = cluster.kubectl("explain", "camerafleet.spec.models").stdout
    assert "The models every frame is sent to" in explained and "batching" in explained

    # scale 2 -> 5 cameras and change a model's batch size: both converge
    grown = fleet("alpha", k, cameras=5)
    grown["spec"]["models"][0]["batching"]["maxBatchSize"] = 16
    assert cluster.apply(grown).returncode == 0
    wait_for("5 cameras reconciled", lambda: (cluster.get("camerafleet", "alpha")["status"]).get("cameras") == 5)
    assert set(kafka_topics(k, [f"alpha_cam_{i}" for i in range(1, 6)])) == {f"alpha_cam_{i}" for i in range(1, 6)}
    serve = yaml.safe_load(cluster.get("rayservice", "alpha-serving")["spec"]["serveConfigV2"])["applications"][0]
    assert next(d for d in serve["deployments"] if d["name"] == "model-faces")["max_ongoing_requests"] == 34
    assert len(yaml.safe_load(cluster.get("configmap", "alpha-config")["data"]["fleet.yaml"])["spec"]["cameras"]) == 5

    # partition decrease: refused, Kafka unchanged
    assert cluster.apply(fleet("alpha", k, cameras=5, partitions=1)).returncode == 0
    cond = wait_for("NotSupported", lambda: (c := cluster.condition("alpha", "TopicsReady")) and c["reason"] == "NotSupported" and c)
    assert "decreasing to 1 is not supported" in cond["message"]
    assert kafka_topics(k, ["alpha_cam_1"])["alpha_cam_1"].partitions == 2
    events = cluster.kubectl("get", "events", "-n", NS, "--field-selector", "involvedObject.name=alpha", "-o", "json").stdout
    assert any(e["reason"] == "NotSupported" for e in json.loads(events)["items"])


def test_job_pods_read_their_fleets_manifest_write_its_pools_and_nothing_else(cluster, controlplane, kafka_server, tmp_path):
    """The grant the operator makes so a running job sees manifest edits in seconds (not after the
    kubelet's next sync of the mounted file): read with the runner's own code and that service account."""
    k = kafka_server.bootstrap
    assert cluster.apply(fleet("reader", k)).returncode == 0
    wait_for("the runner's RoleBinding", lambda: cluster.get("rolebinding", "reader-runner"))
    cluster.serving_then_consumer("reader")
    for role in ("producer", "consumer"):
        cluster_spec = cluster.get("rayjob", f"reader-{role}")["spec"]["rayClusterSpec"]
        head = cluster_spec["headGroupSpec"]["template"]["spec"]
        assert head["serviceAccountName"] == "reader-runner"
        assert {"name": "CAMERAFLEET_MANIFEST_CONFIGMAP", "value": "reader-config"} in head["containers"][0]["env"]
    token = tmp_path / "token"
    token.write_text(controlplane.kubectl("create", "token", "reader-runner", "-n", NS, check=True).stdout.strip())

    def source(name: str) -> ConfigMapManifest:
        return ConfigMapManifest(KubeApi(controlplane.server, NS, token, controlplane.ca_path), name)

    assert manifest_from_text(source("reader-config").read(), "reader").spec.cameras[1].id == "2"
    api = KubeApi(controlplane.server, NS, token, controlplane.ca_path)
    writer = StatusWriter(api, "reader")
    writer.pools({"producer": PoolStatus(actors=2, desired_actors=3, nodes=2, message="1 new actor(s) waiting for Ray to place them")})
    assert not writer.failing and writer.uid == cluster.get("camerafleet", "reader")["metadata"]["uid"]
    writer.event("PoolScaled", "producer pool: 2 -> 3 actors (busy)")
    assert not writer.failing
    assert cluster.apply(fleet("reader", k, cameras=3)).returncode == 0
    wait_for("the edit read through the API", lambda: len(manifest_from_text(source("reader-config").read(), "reader").spec.cameras) == 3)
    status = wait_for("the edit reconciled", lambda: (s := cluster.get("camerafleet", "reader")["status"]).get("cameras") == 3 and s)
    assert status["pools"]["producer"]["actors"] == 2 and status["pools"]["producer"]["desiredActors"] == 3, (
        "the operator keeps the runs' part"
    )
    assert "consumer" not in status["pools"], "each run writes its own pool"
    row = cluster.kubectl("get", "camerafleet", "reader", "-n", NS).stdout
    assert "PRODUCERS" in row.splitlines()[0] and " 2 " in row.splitlines()[1]
    events = json.loads(cluster.kubectl("get", "events", "-n", NS, "--field-selector", "involvedObject.name=reader", "-o", "json").stdout)
    scaled = [e for e in events["items"] if e["reason"] == "PoolScaled"]
    assert scaled and scaled[0]["involvedObject"]["uid"] == writer.uid and scaled[0]["source"]["component"] == "camerafleet-run"
    stranger = StatusWriter(api, "alpha")
    stranger.pools({"producer": PoolStatus(actors=9, desired_actors=9)})
    assert stranger.failing, "a fleet's runs may write only their own fleet's status"
    with pytest.raises(ManifestUnreadable, match="HTTP 403: the Pod's service account may not get it"):
        source("alpha-config").read()
    runner = controlplane.service_account_kubeconfig(NS, "reader-runner", tmp_path / "kubeconfig")
    refused = controlplane.kubectl("get", "configmaps", "-n", NS, kubeconfig=runner, check=False)
    assert "Forbidden" in refused.stderr, "the runner may get its one ConfigMap, not list them"


def test_a_pod_no_node_fits_is_reported_with_its_reason_and_cleared_once_placed(cluster, kafka_server):
    """PodsScheduled through the operator's own RBAC (Pods: list only). No scheduler runs here: the test writes
    what kube-scheduler writes on a Pod that fits no node; the e2e run makes the real scheduler write it."""
    assert cluster.apply(fleet("roomy", kafka_server.bootstrap, kubernetes={"schedulingTimeoutSeconds": 30})).returncode == 0
    wait_for("PodsScheduled", lambda: (c := cluster.condition("roomy", "PodsScheduled")) and c["status"] == "True")
    worker = "roomy-serving-raycluster-x-gpu-workers-worker-abcde"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": worker,
            "namespace": NS,
            "labels": {"camerafleet.io/fleet": "roomy", "camerafleet.io/component": "serving", "ray.io/node-type": "worker"},
        },
        "spec": {
            "automountServiceAccountToken": False,
            "containers": [{"name": "ray-worker", "image": "camerafleet-ray:test", "resources": {"requests": {"cpu": "64"}}}],
        },
    }
    assert cluster.apply(pod).returncode == 0
    a_minute_ago = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
    unschedulable = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "lastTransitionTime": a_minute_ago,
        "message": "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: 2 No preemption victims found.",
    }
    patch = json.dumps({"status": {"conditions": [unschedulable]}})
    cluster.kubectl("patch", "pod", worker, "-n", NS, "--subresource=status", "--type=merge", "-p", patch)
    reported = wait_for("PodsScheduled False", lambda: (c := cluster.condition("roomy", "PodsScheduled")) and c["status"] == "False" and c)
    assert reported["reason"] == "Unschedulable"
    for part in (worker, "cpu=64", "2 Insufficient cpu", "kubernetes.gpuWorkers.resources"):
        assert part in reported["message"], (part, reported["message"])
    assert cluster.get("camerafleet", "roomy")["status"]["phase"] == "Degraded"
    events = json.loads(cluster.kubectl("get", "events", "-n", NS, "--field-selector", "involvedObject.name=roomy", "-o", "json").stdout)
    assert any(e["type"] == "Warning" and e["reason"] == "Unschedulable" and worker in e["message"] for e in events["items"])
    cluster.kubectl("delete", "pod", worker, "-n", NS, "--wait=false")
    wait_for("PodsScheduled True again", lambda: (c := cluster.condition("roomy", "PodsScheduled")) and c["status"] == "True")
    cluster.kubectl("delete", "camerafleet", "roomy", "-n", NS)


def test_invalid_resources_are_refused_or_reported(cluster, kafka_server):
    k = kafka_server.bootstrap
    bad = fleet("bad", k)
    bad["spec"]["cameras"][0]["inferenceFps"] = -1
    proc = cluster.apply(bad)
    assert proc.returncode != 0 and "inferenceFps" in proc.stderr

    bad = fleet("bad", k)
    bad["spec"]["cameras"][0]["fps"] = 3
    proc = cluster.apply(bad)
    assert proc.returncode != 0 and 'unknown field "spec.cameras[0].fps"' in proc.stderr

    bad = fleet("bad", k)
    bad["spec"]["models"] = []
    proc = cluster.apply(bad)
    assert proc.returncode != 0 and "spec.models" in proc.stderr

    # The CRD's bounds are the API server's to enforce (issue 24): a fleet too big for the operator never gets stored.
    proc = cluster.apply(fleet("bad", k, cameras=MAX_CAMERAS + 1))
    assert proc.returncode != 0 and "spec.cameras: Too many" in proc.stderr, proc.stderr[-500:]
    proc = cluster.apply(fleet("bad", k, partitions=1025))
    assert proc.returncode != 0 and "spec.kafka.partitionsPerTopic" in proc.stderr, proc.stderr[-500:]

    dup = fleet("dup", k)
    dup["spec"]["cameras"][1]["id"] = "1"
    assert cluster.apply(dup).returncode == 0, "the schema cannot express uniqueness; the operator reports it"
    ready = wait_for("InvalidSpec", lambda: (c := cluster.condition("dup", "Ready")) and c["reason"] == "InvalidSpec" and c)
    assert "duplicate camera ids: 1" in ready["message"]
    assert cluster.get("camerafleet", "dup")["status"]["phase"] == "Failed"
    assert cluster.get("rayservice", "dup-serving") is None, "nothing is created for an invalid spec"


def test_drift_failed_jobs_restart_and_delete(cluster, kafka_server):
    k = kafka_server.bootstrap
    assert cluster.apply(fleet("gamma", k, kafka={"topicDeletionPolicy": "Delete"})).returncode == 0
    assert cluster.apply(fleet("keep", k)).returncode == 0
    wait_for("gamma topics", lambda: (cluster.condition("gamma", "TopicsReady") or {}).get("status") == "True")
    wait_for("keep topics", lambda: (cluster.condition("keep", "TopicsReady") or {}).get("status") == "True")
    cluster.serving_then_consumer("gamma")
    cluster.serving_then_consumer("keep")

    # drift: a deleted RayJob and a topic deleted behind the operator's back come back
    uid = cluster.get("rayjob", "gamma-producer")["metadata"]["uid"]
    cluster.kubectl("delete", "rayjob", "gamma-producer", "-n", NS)

    async def delete_topic():
        admin = AIOKafkaAdminClient(bootstrap_servers=k)
        await admin.start()
        try:
            await admin.delete_topics(["gamma_cam_2"])
        finally:
            await admin.close()

    asyncio.run(delete_topic())
    wait_for("RayJob recreated", lambda: (j := cluster.get("rayjob", "gamma-producer")) and j["metadata"]["uid"] != uid)
    wait_for("topic recreated", lambda: "gamma_cam_2" in kafka_topics(k, ["gamma_cam_2"]))

    # a failed RayJob is resubmitted with backoff and reported
    uid = cluster.get("rayjob", "gamma-consumer")["metadata"]["uid"]
    patch = json.dumps({"status": {"jobDeploymentStatus": "Failed", "jobStatus": "FAILED", "message": "entrypoint exited with 1"}})
    cluster.kubectl("patch", "rayjob", "gamma-consumer", "-n", NS, "--subresource=status", "--type=merge", "-p", patch)
    wait_for("resubmitted", lambda: (j := cluster.get("rayjob", "gamma-consumer")) and j["metadata"]["uid"] != uid)
    status = wait_for("failure counted", lambda: (s := cluster.get("camerafleet", "gamma")["status"])["consumerJob"]["failures"] == 1 and s)
    assert "entrypoint exited with 1" in status["consumerJob"]["lastFailure"]
    events = json.loads(cluster.kubectl("get", "events", "-n", NS, "--field-selector", "involvedObject.name=gamma", "-o", "json").stdout)
    assert {"JobFailed", "JobResubmitted"} <= {e["reason"] for e in events["items"]}

    # the operator killed and restarted: converges, no duplicates
    cluster.proc.kill()
    cluster.proc.wait()
    grown = fleet("gamma", k, cameras=3, kafka={"topicDeletionPolicy": "Delete"})
    assert cluster.apply(grown).returncode == 0
    cluster.start_operator()
    wait_for("restart converged", lambda: cluster.get("camerafleet", "gamma")["status"].get("cameras") == 3)
    for kind, count in (("configmaps", 1), ("rayservices", 1), ("rayjobs", 2)):
        items = json.loads(cluster.kubectl("get", kind, "-n", NS, "-l", "camerafleet.io/fleet=gamma", "-o", "json").stdout)["items"]
        assert len(items) == count, f"{kind}: {[i['metadata']['name'] for i in items]}"

    # delete: the Ray objects go first, the fleet waits for KubeRay (here: a finalizer like KubeRay's, which
    # KubeRay removes once it has stopped the job through the dashboard with the fleet's token), then owned
    # objects are garbage-collected, the token's Secret last; topics follow the policy
    assert cluster.get("secret", "gamma-ray-token") is not None
    cluster.kubectl(
        "patch", "rayjob", "gamma-consumer", "-n", NS, "--type", "merge", "-p", '{"metadata":{"finalizers":["ray.io/rayjob-finalizer"]}}'
    )
    cluster.kubectl("delete", "camerafleet", "gamma", "keep", "-n", NS, "--wait=false")
    wait_for(
        "gamma's RayJob asked to go", lambda: (cluster.get("rayjob", "gamma-consumer") or {}).get("metadata", {}).get("deletionTimestamp")
    )
    time.sleep(5)  # a pass of the deletion handler (it polls every 5 s): the fleet must still wait
    assert cluster.get("camerafleet", "gamma") is not None and cluster.get("secret", "gamma-ray-token") is not None, (
        "the fleet and its token outlive a RayJob KubeRay has not let go of"
    )
    cluster.kubectl("patch", "rayjob", "gamma-consumer", "-n", NS, "--type", "merge", "-p", '{"metadata":{"finalizers":[]}}')
    wait_for("gamma deleted", lambda: cluster.get("camerafleet", "gamma") is None)
    for kind, name in (
        ("configmap", "gamma-config"),
        ("rayservice", "gamma-serving"),
        ("rayjob", "gamma-producer"),
        ("rayjob", "keep-consumer"),
        ("secret", "gamma-ray-token"),
    ):
        wait_for(f"{kind} {name} garbage-collected", lambda kind=kind, name=name: cluster.get(kind, name) is None)
    assert kafka_topics(k, ["gamma_cam_1", "gamma_results"]) == {}
    assert set(kafka_topics(k, ["keep_cam_1", "keep_results"])) == {"keep_cam_1", "keep_results"}


# (verb, resource, namespace or None for cluster scope): what the operator does, then what it must never do.
NEEDED = [
    ("watch", "camerafleets.camerafleet.io", None),
    ("patch", "camerafleets.camerafleet.io/status", NS),
    ("update", "camerafleets.camerafleet.io/finalizers", NS),
    ("patch", "configmaps", NS),
    ("create", "rayjobs.ray.io", NS),
    ("delete", "rayjobs.ray.io", NS),
    ("patch", "rayservices.ray.io", NS),
    ("patch", "serviceaccounts", NS),
    ("create", "roles.rbac.authorization.k8s.io", NS),
    ("create", "rolebindings.rbac.authorization.k8s.io", NS),
    ("create", "events", NS),
    ("list", "customresourcedefinitions.apiextensions.k8s.io", None),
    ("create", "secrets", NS),  # the fleet's Ray token, once; never read back
    ("patch", "networkpolicies.networking.k8s.io", NS),
    ("list", "pods", NS),  # its fleets' Pods, by label, for the ones no node fits (PodsScheduled)
]
REFUSED = [
    ("get", "secrets", NS),
    ("list", "secrets", OPERATOR_NS),
    ("watch", "secrets", NS),
    ("patch", "secrets", NS),
    ("delete", "secrets", NS),
    ("get", "pods", NS),
    ("watch", "pods", NS),
    ("create", "pods", NS),
    ("create", "pods/exec", NS),
    ("delete", "camerafleets.camerafleet.io", NS),
    ("patch", "customresourcedefinitions.apiextensions.k8s.io", None),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", None),
    ("bind", "clusterroles.rbac.authorization.k8s.io", None),
    ("escalate", "clusterroles.rbac.authorization.k8s.io", None),
    ("bind", "roles.rbac.authorization.k8s.io", NS),
    ("escalate", "roles.rbac.authorization.k8s.io", NS),
    ("impersonate", "serviceaccounts", NS),
    ("create", "serviceaccounts/token", OPERATOR_NS),
    ("delete", "namespaces", None),
    ("patch", "rayclusters.ray.io", NS),
    ("delete", "events", NS),
    ("update", "deployments.apps", OPERATOR_NS),
]


@pytest.mark.faults
def test_operator_has_no_more_rights_than_it_needs(cluster, controlplane, tmp_path, fault_report):
    row = fault_report.row(
        f"the operator's ServiceAccount (exactly the chart's ClusterRole) asks for {len(REFUSED)} things it does not need "
        "(Secrets, Pods, exec, RBAC escalation, impersonation, CRD changes, ...)",
        f"every one refused by the real API server; the {len(NEEDED)} rights it needs granted",
    )
    shipped = {name: yaml.safe_load(path.read_text()) for name, path in chart_files.CHART_RULES.items()}
    assert shipped == chart_files.role_rules(), "the tests bind role.yaml; the chart must ship the same rules"
    sa = controlplane.service_account_kubeconfig(OPERATOR_NS, "camerafleet-operator", tmp_path / "kubeconfig")
    env = {**os.environ, "KUBECONFIG": str(sa)}

    def can(verb: str, resource: str, ns: str | None) -> bool:
        # `can-i create serviceaccounts/token` would ask about a ServiceAccount *named* token: a subresource
        # needs --subresource.
        kind, _, sub = resource.partition("/")
        args = [kind, f"--subresource={sub}"] if sub else [kind]
        proc = controlplane.kubectl("auth", "can-i", verb, *args, *(["-n", ns] if ns else []), env=env)
        assert proc.stdout.strip() in ("yes", "no"), proc.stderr
        return proc.stdout.strip() == "yes"

    missing = [f"{v} {r}" for v, r, ns in NEEDED if not can(v, r, ns)]
    granted = [f"{v} {r}" for v, r, ns in REFUSED if can(v, r, ns)]
    refused_calls = []
    for args, allowed in (
        (["get", "camerafleets", "-A"], True),
        (["get", "rayjobs", "-A"], True),
        (["get", "secrets", "-A"], False),
        (["get", "pod", "any", "-n", NS], False),  # one Pod: listing them (by label) is all it may
        (["create", "namespace", "evil"], False),
        (["delete", "crd", "camerafleets.camerafleet.io"], False),
        (["create", "role", "evil", "-n", NS, "--verb=get", "--resource=secrets"], False),  # granting what it lacks
        (
            ["create", "clusterrolebinding", "evil", "--clusterrole=cluster-admin", f"--serviceaccount={OPERATOR_NS}:camerafleet-operator"],
            False,
        ),
    ):
        proc = controlplane.kubectl(*args, env=env)
        assert (proc.returncode == 0) == allowed, f"kubectl {' '.join(args)}: {proc.stderr}"
        if not allowed:
            assert "Forbidden" in proc.stderr or "forbidden" in proc.stderr
            refused_calls.append(args[0] + " " + args[1])
    row.happened = (
        f"can-i: {len(REFUSED) - len(granted)}/{len(REFUSED)} refused (granted: {granted or 'none'}), "
        f"{len(NEEDED) - len(missing)}/{len(NEEDED)} needed rights granted (missing: {missing or 'none'}); "
        f"real calls refused with Forbidden: {', '.join(refused_calls)}"
    )
    assert not granted, f"the operator may do more than it needs: {granted}"
    assert not missing, f"the operator lacks rights it needs: {missing}"


def test_shipped_manifests_are_accepted_by_the_api_server(cluster):
    """rayservice.yaml and rayjob.yaml (no operator needed) and the example fleets, under the real CRD schemas."""
    for path in ("rayservice.yaml", "rayjob.yaml", "examples/cluster-fleet.yaml", "examples/demo-fleet.yaml"):
        proc = cluster.kubectl("apply", "--dry-run=server", "-f", str(ROOT / path), check=False)
        assert proc.returncode == 0, f"{path}: {proc.stderr}"


def test_a_topic_owned_by_another_fleet_is_left_alone(cluster, kafka_server):
    k = kafka_server.bootstrap
    first = fleet("first", k)
    assert cluster.apply(first).returncode == 0
    wait_for("first owns its topics", lambda: (cluster.condition("first", "TopicsReady") or {}).get("status") == "True")
    second = fleet("second", k, partitions=3)
    second["spec"]["kafka"]["topicPrefix"] = "first_cam_"  # same camera topics as the older fleet
    assert cluster.apply(second).returncode == 0
    cond = wait_for("Conflict", lambda: (c := cluster.condition("second", "TopicsReady")) and c["reason"] == "Conflict" and c)
    assert f"belongs to fleet {NS}/first" in cond["message"]
    assert kafka_topics(k, ["first_cam_1"])["first_cam_1"].partitions == 2, "the conflicting fleet changed nothing"
    cluster.kubectl("delete", "camerafleet", "first", "second", "-n", NS)
