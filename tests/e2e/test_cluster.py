"""CameraFleet on a real Kubernetes node (`make test-e2e` on the cluster of `make cluster-up`): the operator's
image reconciles a fleet, the real KubeRay runs our Ray image in Pods, frames flow through them, and the
ledger, counted from Kafka alone, balances, also across faults. Recovery times are measured and written
to out/e2e/report.md; the tests assert behaviour (what recovers, what is counted), never a speed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from camerafleet.topics import end_offsets, wait_committed
from camerafleet_dev.clips import write_demo_frames
from camerafleet_dev.devservers._process import free_port
from camerafleet_dev.devservers.camera import CameraServer
from camerafleet_dev.images import OPERATOR_IMAGE, RAY_IMAGE
from camerafleet_operator.validate import memory_bytes
from tests.e2e.conftest import (
    CLUSTER_DIR,
    LAYOUT,
    NS,
    OPERATOR_NS,
    OPERATOR_VALUES,
    ROOT,
    Cluster,
    front_the_nodes_kafka_and_minio,
    readme_fleet,
    wait_for,
)
from tests.fixtures.prometheus import SCRAPE_S, dashboard_queries, empty_or_unlabelled

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

FLEET = "example"
# The examples leave their Kafka names unset: on Kubernetes they are the fleet's own (the operator's tenancy.per_fleet).
OWN = f"{NS}.{FLEET}"
RESULTS, DEADLETTER, GROUP = f"{OWN}.results", f"{OWN}.deadletter", OWN
REPORT = ROOT / "out" / "e2e" / f"report-{LAYOUT}.md"
READY_TIMEOUT_S = 900  # cold Ray pods on a busy 2-core node; typically ~2.5 minutes
RECOVERY_TIMEOUT_S = 600
ADDED_CAMERA = {"id": "3", "source": "synthetic:1280x720@30"}  # added with kubectl patch; its topic is made fresh too
measured: dict[str, str] = {}


def node_sockets() -> list[Path]:
    """Every node's containerd socket (node 1's in the cluster folder, a further node's in its own); not a walk
    of the whole folder, where MinIO's frames come and go meanwhile."""
    return [
        p for p in (CLUSTER_DIR / "containerd" / "containerd.sock", *CLUSTER_DIR.glob("node-*/containerd/containerd.sock")) if p.exists()
    ]


def camera_topics(fleet: dict[str, Any], own: str = OWN) -> list[str]:
    prefix = fleet["spec"]["kafka"].get("topicPrefix", f"{own}.camera_")
    return [f"{prefix}{c['id']}" for c in fleet["spec"]["cameras"]]


async def _results(bootstrap: str, topic: str, isolation_level: str = "read_uncommitted") -> list[dict[str, Any]]:
    """Every record of a topic from its beginning (the topics belong to this test's fleet); `read_committed` for the
    topics the events stage writes in transactions."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest", isolation_level=isolation_level
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in partitions]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        values: list[dict[str, Any]] = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                values += [orjson.loads(r.value) for r in records]
        return values
    finally:
        await consumer.stop()


def ledger(c: Cluster, fleet: dict[str, Any], timeout_s: float = RECOVERY_TIMEOUT_S, own: str = OWN) -> dict[str, Any]:
    """The ledger from Kafka alone: every message announced on a camera topic so far must reach a result on
    the results topic (at-least-once: repeats counted once). Waits until the consumer group committed up to
    the announced end (it commits only after the results are written). `own`: the fleet's `<namespace>.<name>`."""
    topics = camera_topics(fleet, own)
    ends = asyncio.run(end_offsets(c.kafka, topics))
    want = {(t, p): end for t, parts in ends.items() for p, end in parts.items() if end > 0}
    behind = asyncio.run(wait_committed(c.kafka, own, want, timeout_s))
    assert not behind, f"consumers did not catch up with {sum(behind.values())} announced frames within {timeout_s:.0f} s: {behind}"
    results = asyncio.run(_results(c.kafka, f"{own}.results"))
    first: dict[tuple[str, int, int], dict[str, Any]] = {}
    for r in results:
        first.setdefault((r["topic"], r["partition"], r["offset"]), r)
    announced = {(t, p, o) for (t, p), end in want.items() for o in range(end)}
    missing = sorted(announced - set(first))
    outcomes = Counter((r["cameraId"], r["outcome"], r.get("reason")) for pos, r in first.items() if pos in announced)
    return {"announced": len(announced), "missing": missing, "outcomes": outcomes, "records": [first[p] for p in announced if p in first]}


def processed_since(c: Cluster, camera: str, since_ms: int) -> list[dict[str, Any]]:
    return [
        r
        for r in asyncio.run(_results(c.kafka, RESULTS))
        if r["cameraId"] == camera and r["outcome"] == "processed" and r["captureTsMs"] >= since_ms
    ]


def unschedulable(c: Cluster, ns: str) -> list[str]:
    """Pods of `ns` the scheduler could not place, with its reason."""
    return [
        f"{p['metadata']['name']}: {cond.get('message')}"
        for p in c.items("pods", ns=ns)
        if p["status"].get("phase") == "Pending"
        for cond in p["status"].get("conditions", [])
        if cond.get("reason") == "Unschedulable"
    ]


def report(name: str, text: str) -> None:
    measured[name] = text
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(
        f"# CameraFleet on the cluster of make cluster-up, {LAYOUT} layout (make test-e2e)\n\n"
        + "\n".join(f"- **{k}**: {v}" for k, v in measured.items())
        + "\n"
    )


async def _fresh_kafka(bootstrap: str, names: list[str]) -> None:
    """Delete an earlier run's topics (the operator creates them again and starts the group at 0 on them)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        if stale := [n for n in names if n in existing]:
            await admin.delete_topics(stale)
    finally:
        await admin.close()


@pytest.fixture(scope="module")
def fleet(installed: Cluster) -> dict[str, Any]:
    """The README's small-node fleet, applied once its topics are fresh (the ledger counts them from offset 0)."""
    c = installed
    doc = readme_fleet(c)
    added = {**doc, "spec": {**doc["spec"], "cameras": [*doc["spec"]["cameras"], ADDED_CAMERA]}}
    asyncio.run(_fresh_kafka(c.kafka, [*camera_topics(added), RESULTS, DEADLETTER]))
    started = time.monotonic()
    c.apply(doc)
    wait_for("the fleet READY", lambda: c.condition(FLEET, "Ready").get("status") == "True", READY_TIMEOUT_S, 5)
    pods = len(c.items("pods", "-l", "ray.io/is-ray-node=yes"))
    sample_storage(c)
    report(
        "fleet applied to READY",
        f"{time.monotonic() - started:.0f} s (a RayService and 2 RayJobs, their {pods} Ray Pods started by KubeRay)",
    )
    return doc


def test_the_operator_and_kuberay_run_our_images_and_nothing_is_pulled(installed: Cluster, fleet: dict[str, Any]) -> None:
    c = installed
    [operator] = c.items("pods", "-l", "app.kubernetes.io/name=camerafleet-operator", ns=OPERATOR_NS)
    assert operator["spec"]["containers"][0]["image"] == OPERATOR_IMAGE and operator["status"]["phase"] == "Running"
    ray_pods = c.items("pods", "-l", "ray.io/is-ray-node=yes")
    kinds = {(p["metadata"]["labels"].get("ray.io/node-type"), p["metadata"]["labels"].get("ray.io/cluster", "")[:30]) for p in ray_pods}
    assert {"head", "worker"} <= {k for k, _ in kinds}, kinds
    for pod in ray_pods:
        for container in pod["spec"]["containers"]:
            if container["name"].startswith("ray-"):
                assert container["image"] == RAY_IMAGE, container["image"]
            assert container.get("imagePullPolicy") in ("IfNotPresent", "Never"), (pod["metadata"]["name"], container)
    pulls = [
        e
        for e in c.items("events", ns=NS) + c.items("events", ns=OPERATOR_NS)
        if e["reason"] in ("Pulling", "Failed") and "pull" in e["message"].lower()
    ]
    assert not pulls, f"an image was pulled: {pulls[:3]}"
    assert "in place" in c.run("make", "-s", "-C", str(ROOT), "cluster-status", check=False).stdout


# Each of the fleet's Pods' ephemeral storage (bytes) over the run, as their kubelets measure it: (time, {pod: bytes}).
storage_samples: list[tuple[float, dict[str, int]]] = []
STORAGE_BOUND = 2**30  # far above Ray's logs (rotated at 64 MiB, 2 kept, per file) and far below a node's eviction margin


def sample_storage(c: Cluster) -> dict[str, int]:
    used: dict[str, int] = {}
    for node in c.items("nodes"):
        proc = c.kubectl("get", "--raw", f"/api/v1/nodes/{node['metadata']['name']}/proxy/stats/summary", check=False)
        for pod in json.loads(proc.stdout).get("pods", []) if proc.returncode == 0 else []:
            ref = pod["podRef"]
            if ref["namespace"] == NS and ref["name"].startswith(f"{FLEET}-"):
                used[ref["name"]] = int((pod.get("ephemeral-storage") or {}).get("usedBytes", 0))
    storage_samples.append((time.time(), used))
    return used


def test_ready_follows_the_real_kuberay_statuses(installed: Cluster, fleet: dict[str, Any]) -> None:
    c = installed
    table = c.kubectl("get", "camerafleets").stdout
    assert FLEET in table and "True" in table and "Running" in table, table
    assert c.condition(FLEET, "ServingReady")["reason"] == "NonZeroServeEndpoints"
    assert c.condition(FLEET, "ProducersRunning")["reason"] == c.condition(FLEET, "ConsumersRunning")["reason"] == "Running"
    service = c.get("rayservice", f"{FLEET}-serving")
    assert any(x["type"] == "Ready" and x["status"] == "True" for x in service["status"]["conditions"])
    for role in ("producer", "consumer"):
        job = c.get("rayjob", f"{FLEET}-{role}")["status"]
        assert (job["jobDeploymentStatus"], job["jobStatus"]) == ("Running", "RUNNING")


def test_work_runs_where_the_layout_puts_it(installed: Cluster, fleet: dict[str, Any]) -> None:
    """Production layout: heads coordinate only (no CPUs for Ray), the producers' and consumers' actors run on
    their jobs' worker Pods, the models' replicas on the GPU pool's nodes. Small-node layout: all on the heads."""
    c = installed
    nodes = {n["metadata"]["name"]: n["metadata"].get("labels", {}) for n in c.items("nodes")}
    placed: dict[str, set[str]] = {}
    for role, actor in (("producer", "ProducerActor"), ("consumer", "ConsumerActor")):
        status = c.get("rayjob", f"{FLEET}-{role}")["status"]
        head = status["rayClusterName"]
        ray_nodes = {n["node_id"]: n for n in dashboard(c, head, "/api/v0/nodes?limit=100")["data"]["result"]["result"]}
        actors = dashboard(c, head, f"/api/v0/actors?limit=1000&filter_keys=class_name&filter_predicates=%3D&filter_values={actor}")
        alive = [a for a in actors["data"]["result"]["result"] if a["state"] == "ALIVE"]
        assert len(alive) == fleet["spec"][role]["actors"], alive
        placed[role] = {"head" if ray_nodes[a["node_id"]]["is_head_node"] else "worker" for a in alive}
    serving = c.get("rayservice", f"{FLEET}-serving")["status"]["activeServiceStatus"]["rayClusterName"]
    replica_nodes = {p["spec"]["nodeName"] for p in c.items("pods", "-l", f"ray.io/cluster={serving},ray.io/node-type=worker")}
    if LAYOUT == "production":
        assert placed == {"producer": {"worker"}, "consumer": {"worker"}}, placed
        assert all(nodes[n].get("nvidia.com/gpu.present") == "true" for n in replica_nodes), (replica_nodes, nodes)
    else:
        assert placed == {"producer": {"head"}, "consumer": {"head"}}, placed
    report("placement", f"producer and consumer actors on {placed}; the models' worker Pods on {sorted(replica_nodes)}")


_SHM_BYTES = "import os; s = os.statvfs('/dev/shm'); print(s.f_blocks * s.f_frsize)"


def test_each_ray_pod_has_one_dev_shm_sized_to_its_memory_limit(installed: Cluster, fleet: dict[str, Any]) -> None:
    """Issue 23, defect 8: Ray's object store lives in /dev/shm. KubeRay mounts a memory-backed emptyDir there,
    sized to the container's memory limit; an emptyDir of our own on the same path shadowed it and its size limit
    was lost (64 MiB of the container runtime, or the node's memory). Read in the Pod itself."""
    c = installed
    sizes = []
    for pod in c.items("pods", "-l", "ray.io/node-type"):
        spec = pod["spec"]
        container = next(x for x in spec["containers"] if x["name"].startswith("ray-"))
        mounts = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/dev/shm"]
        assert len(mounts) == 1, (pod["metadata"]["name"], mounts)
        volume = next(v for v in spec["volumes"] if v["name"] == mounts[0]["name"])
        limit = memory_bytes(container["resources"]["limits"]["memory"])
        assert volume["emptyDir"]["medium"] == "Memory" and memory_bytes(volume["emptyDir"]["sizeLimit"]) == limit, volume
        seen = int(c.kubectl("exec", "-n", NS, pod["metadata"]["name"], "-c", container["name"], "--", "python", "-c", _SHM_BYTES).stdout)
        assert seen == limit, f"{pod['metadata']['name']}: /dev/shm is {seen} bytes, its memory limit {limit}"
        sizes.append(f"{pod['metadata']['name']} {seen / 2**30:g} GiB")
    assert sizes
    report("/dev/shm", "; ".join(sizes))


def test_frames_flow_for_every_camera_and_nothing_fails_or_is_lost(installed: Cluster, fleet: dict[str, Any]) -> None:
    c = installed
    for camera in (cam["id"] for cam in fleet["spec"]["cameras"]):
        wait_for(f"processed frames of camera {camera}", lambda camera=camera: processed_since(c, camera, 0), 300)
    book = ledger(c, fleet)
    assert not book["missing"], f"{len(book['missing'])} announced frames have no result: {book['missing'][:5]}"
    failed = {k: v for k, v in book["outcomes"].items() if k[1] == "failed"}
    assert not failed, f"frames failed (e.g. because Serve was not ready yet): {failed}"
    processed = [r for r in book["records"] if r["outcome"] == "processed"]
    assert processed and all(set(r["models"]) == {"faces", "health"} for r in processed)
    assert all(isinstance(r["models"]["faces"]["detections"], list) and "brightness" in r["models"]["health"]["health"] for r in processed)
    report(
        "ledger after start",
        f"{book['announced']} frames announced, every one with a result: {dict(Counter(k[1] for k in book['outcomes'].elements()))}",
    )


@contextlib.contextmanager
def console(c: Cluster) -> Iterator[Callable[[str], bytes | None]]:
    """The README's `kubectl port-forward service/<fleet>-console 8090`: yields a GET of the console's paths (None
    while the forward or the driver is not up yet)."""
    port = free_port()
    forward = subprocess.Popen(
        [c.env["KUBECTL"], "port-forward", f"service/{FLEET}-console", f"{port}:8090", "-n", NS],
        env={**os.environ, **c.env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )

    def get(path: str) -> bytes | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
                return bytes(resp.read())
        except OSError:
            return None

    try:
        yield get
    finally:
        forward.terminate()
        forward.wait(timeout=30)


def test_the_fleet_console_answers_through_its_service(installed: Cluster, fleet: dict[str, Any]) -> None:
    """The producer job's driver serves every camera's tile with a processed frame, the frame itself, and nothing of
    the bucket or the sources, through the console's Service."""
    c = installed
    with console(c) as get:

        def every_tile_live() -> dict[str, Any] | None:
            body = get("/api/fleet")
            view = json.loads(body) if body else None
            tiles = {t["cameraId"]: t for t in view["tiles"]} if view else {}
            cameras = {cam["id"] for cam in fleet["spec"]["cameras"]}
            live = cameras <= set(tiles) and all(tiles[cam]["up"] and tiles[cam]["latest"] for cam in cameras)
            # The models run in the RayService: their replicas come from its dashboard, as KubeRay reads them.
            replicas = view is not None and all(isinstance(m["replicas"], int) and m["replicas"] >= 1 for m in view["header"]["models"])
            return view if live and replicas else None

        view = wait_for(
            "every camera's tile live with a processed frame and model replicas, through the console's Service", every_tile_live, 300
        )
        tile = next(t for t in view["tiles"] if t["latest"])
        frame = get(f"/api/cameras/{tile['cameraId']}/frames/{tile['latest']['seq']}")
        assert frame is not None and frame[:2] == b"\xff\xd8", "the tile's frame is served"
        assert b"console.js" in (get("/") or b"")
    text = json.dumps(view)
    for secret in (c.env["CAMERAFLEET_S3_ENDPOINT"], "s3://", "synthetic:"):
        assert secret not in text
    models = ", ".join(f"{m['name']} {m['replicas']}/{m['maxReplicas']} replicas" for m in view["header"]["models"])
    report("console", f"{len(view['tiles'])} tiles through service/{FLEET}-console, {view['header']['processedPerS']} frames/s, {models}")


def _kubernetes_scrape_configs(kubeconfig: str) -> list[dict[str, Any]]:
    """What the stack chart's PodMonitor (Ray Pods labelled camerafleet.io/fleet, ports `metrics` and `run-metrics`) and the
    operator chart's ServiceMonitor (the operator's `metrics` port) make a Prometheus Operator scrape, as
    plain Kubernetes service discovery."""

    def pods(job: str, keep: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "job_name": job,
            "kubernetes_sd_configs": [{"role": "pod", "kubeconfig_file": kubeconfig}],
            "relabel_configs": [
                *keep,
                {"source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": "metrics|run-metrics", "action": "keep"},
                {"source_labels": ["__meta_kubernetes_pod_phase"], "regex": "Running", "action": "keep"},
                {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            ],
        }

    fleet_pods = [{"source_labels": ["__meta_kubernetes_pod_labelpresent_camerafleet_io_fleet"], "regex": "true", "action": "keep"}]
    operator = [
        {"source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_name"], "regex": "camerafleet-operator", "action": "keep"}
    ]
    return [pods("camerafleet-fleets", fleet_pods), pods("camerafleet-operator", operator)]


def test_a_real_prometheus_discovers_the_fleets_pods_and_the_dashboard_fills(installed: Cluster, fleet: dict[str, Any], prometheus) -> None:
    """Prometheus finds every Ray Pod of the fleet and the operator through Kubernetes service discovery,
    scrapes them over the Pod network, and every panel a healthy fleet fills returns data (the panels only a
    fault or tracked objects fill are checked on a faulty fleet with events in tests/integration/test_dashboard.py)."""
    c = installed
    started = time.time()
    prom = prometheus({}, scrape_configs=_kubernetes_scrape_configs(c.env["KUBECONFIG"]))
    ray_pods = {p["metadata"]["name"] for p in c.items("pods", "-l", "ray.io/is-ray-node=yes") if p["status"].get("phase") == "Running"}

    def every_pod_scraped() -> dict[str, list[str]] | None:
        active = prom.api("targets")["activeTargets"]
        up = {t["labels"]["pod"] for t in active if t["health"] == "up"}
        jobs = {
            job: sorted(t["labels"]["pod"] for t in active if t["labels"]["job"] == job)
            for job in ("camerafleet-fleets", "camerafleet-operator")
        }
        return jobs if ray_pods <= up and jobs["camerafleet-operator"] and set(jobs["camerafleet-operator"]) <= up else None

    jobs = wait_for(f"the fleet's {len(ray_pods)} Ray Pods and the operator scraped", every_pod_scraped, 180)
    queries = [q for q in dashboard_queries(FLEET, SCRAPE_S) if not q.needs_a_fault and not q.needs_tracked_objects]

    def panels_filled() -> bool:
        problems[:] = [p for q in queries if (p := empty_or_unlabelled(prom, q, started, time.time(), SCRAPE_S))]
        return not problems

    problems: list[str] = []
    try:
        wait_for("every panel a healthy fleet fills to return data", panels_filled, 240, interval_s=5)
    except AssertionError:
        raise AssertionError("panels without data:\n" + "\n".join(problems)) from None
    report(
        "Prometheus through Kubernetes service discovery",
        f"{len(jobs['camerafleet-fleets'])} Ray Pods and the operator scraped; {len(queries)} panel queries returned data",
    )


def test_the_nodes_cpu_and_memory_while_the_fleet_runs(installed: Cluster, fleet: dict[str, Any]) -> None:
    """Measured by the kubelet (its summary API, through the API server): the whole machine (the node also
    runs the control plane, Kafka and MinIO as host processes) and the fleet's Pods, averaged over 30 s."""
    c = installed
    node = c.items("nodes")[0]["metadata"]["name"]
    samples = []
    for _ in range(6):
        samples.append(json.loads(c.kubectl("get", "--raw", f"/api/v1/nodes/{node}/proxy/stats/summary").stdout))
        time.sleep(5)

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    node_cpu = mean([s["node"]["cpu"]["usageNanoCores"] / 1e9 for s in samples])
    node_mem = mean([s["node"]["memory"]["workingSetBytes"] / 2**30 for s in samples])
    pods: dict[str, list[tuple[float, float]]] = {}
    for s in samples:
        for pod in s["pods"]:
            if pod["podRef"]["namespace"] == NS and "cpu" in pod and "memory" in pod:
                pods.setdefault(pod["podRef"]["name"], []).append(
                    (pod["cpu"].get("usageNanoCores", 0) / 1e9, pod["memory"].get("workingSetBytes", 0) / 2**30)
                )
    assert pods, "the kubelet reports no Pods of the fleet"
    by_pod = {name: (mean([v[0] for v in vs]), mean([v[1] for v in vs])) for name, vs in pods.items()}
    report(
        "node while the fleet runs",
        f"whole machine {node_cpu:.2f} CPU cores, {node_mem:.1f} GiB working set; the {len(by_pod)} Pods in {NS} (the fleet's, KubeRay's) "
        f"{sum(v[0] for v in by_pod.values()):.2f} cores, {sum(v[1] for v in by_pod.values()):.1f} GiB ("
        + ", ".join(f"{n}: {cpu:.2f} cores {mem:.2f} GiB" for n, (cpu, mem) in sorted(by_pod.items()))
        + ")",
    )


def _serving_pods(c: Cluster) -> dict[str, tuple[str, int]]:
    pods = c.items(
        "pods", "-l", f"ray.io/cluster={c.get('rayservice', f'{FLEET}-serving')['status']['activeServiceStatus']['rayClusterName']}"
    )
    return {
        p["metadata"]["name"]: (p["metadata"]["uid"], sum(s.get("restartCount", 0) for s in p["status"].get("containerStatuses", [])))
        for p in pods
    }


def test_a_camera_added_with_kubectl_patch_flows_without_restarting_model_replicas(installed: Cluster, fleet: dict[str, Any]) -> None:
    c = installed
    before_pods = _serving_pods(c)
    before_service = c.get("rayservice", f"{FLEET}-serving")
    jobs = {r: c.get("rayjob", f"{FLEET}-{r}")["metadata"]["uid"] for r in ("producer", "consumer")}
    cameras = [*fleet["spec"]["cameras"], ADDED_CAMERA]
    patched = time.time()
    c.kubectl("patch", "camerafleet", FLEET, "--type=merge", "-p", json.dumps({"spec": {"cameras": cameras}}))
    fleet["spec"]["cameras"] = cameras
    wait_for("frames of the new camera", lambda: processed_since(c, ADDED_CAMERA["id"], int(patched * 1000)), RECOVERY_TIMEOUT_S, 2)
    flowing_s = time.time() - patched
    report(
        "camera added with kubectl patch",
        f"its first processed frame {flowing_s:.0f} s after the patch; no model replica or RayJob restarted",
    )
    log = job_log(c, "producer")
    assert f"manifest change from ConfigMap {NS}/{FLEET}-config applied" in log, (
        "the producers read the edit through the API server, not from the kubelet's delayed copy of the mounted file"
    )
    assert c.get("rayservice", f"{FLEET}-serving")["spec"] == before_service["spec"], "a camera edit changed the RayService"
    assert _serving_pods(c) == before_pods, "the Serve cluster's Pods were replaced or restarted"
    assert {r: c.get("rayjob", f"{FLEET}-{r}")["metadata"]["uid"] for r in jobs} == jobs, "a RayJob was replaced"


# Asked from inside the head Pod with the token KubeRay put in its environment: the dashboard refuses a
# request without it, and the API server's Service proxy cannot carry Ray's header.
_ASK_DASHBOARD = (
    "import json, sys, urllib.request; from camerafleet.ray_auth import dashboard_headers; "
    "r = urllib.request.Request('http://127.0.0.1:8265' + sys.argv[1], headers=dashboard_headers()); "
    "print(json.dumps(json.load(urllib.request.urlopen(r, timeout=30))))"
)


def dashboard(c: Cluster, cluster: str, path: str) -> Any:
    """A Ray cluster's dashboard JSON API (`cluster`: the RayCluster's name), or None when it does not answer."""
    heads = c.items("pod", "-l", f"ray.io/cluster={cluster},ray.io/node-type=head")
    if not heads:
        return None
    pod = heads[0]["metadata"]["name"]
    proc = c.kubectl("exec", "-n", NS, pod, "-c", "ray-head", "--", "python", "-c", _ASK_DASHBOARD, path, check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else None


def test_rays_dashboard_refuses_a_caller_without_the_fleets_token(installed: Cluster, fleet: dict[str, Any]) -> None:
    """Ray's job API, asked from the fleet's own head Pod without the token: 401 (KubeRay's authOptions)."""
    cluster = installed.get("rayservice", f"{FLEET}-serving")["status"]["activeServiceStatus"]["rayClusterName"]
    pod = installed.items("pod", "-l", f"ray.io/cluster={cluster},ray.io/node-type=head")[0]["metadata"]["name"]
    ask = (
        "import urllib.request, urllib.error\ntry:\n urllib.request.urlopen('http://127.0.0.1:8265/api/jobs/', timeout=30)\n"
        " print('open')\nexcept urllib.error.HTTPError as e:\n print(e.code)"
    )
    answer = installed.kubectl("exec", "-n", NS, pod, "-c", "ray-head", "--", "python", "-c", ask).stdout.strip()
    assert answer == "401", f"Ray's job API without the token answered {answer!r}"
    assert dashboard(installed, cluster, "/api/jobs/") is not None, "with the token it answers"


# Run in a probe Pod: which of the given host:port answer a TCP connection.
_PROBE = (
    "import json, socket, sys\nout = {}\nfor target in sys.argv[1:]:\n host, port = target.rsplit(':', 1)\n try:\n"
    "  socket.create_connection((host, int(port)), timeout=5).close(); out[target] = 'open'\n"
    " except OSError as err:\n  out[target] = type(err).__name__\nprint(json.dumps(out))"
)


def probe_pod(c: Cluster, ns: str, name: str, labels: dict[str, str]) -> str:
    """A Pod running the operator image (Python, non-root, already on the nodes) that does nothing until asked."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {
            "containers": [
                {
                    "name": "probe",
                    "image": OPERATOR_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["python", "-c", "import time; time.sleep(3600)"],
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "allowPrivilegeEscalation": False},
                }
            ],
            "terminationGracePeriodSeconds": 0,
        },
    }
    c.kubectl("apply", "-f", "-", stdin=json.dumps(pod))
    wait_for(f"probe Pod {ns}/{name} running", lambda: ((c.get("pod", name, ns) or {}).get("status") or {}).get("phase") == "Running", 180)
    return name


def test_from_another_namespace_rays_ports_and_the_console_are_refused(installed: Cluster, fleet: dict[str, Any]) -> None:
    """Issue 24: the fleet's NetworkPolicy, enforced by the cluster's policy agent (kube-router's firewall). From a
    Pod in another namespace, and from a Pod of the fleet's namespace that is not the fleet's, Ray's dashboard
    (job submission), GCS, the Ray client and Serve of the fleet's Ray clusters and the console do not answer;
    the same Pods reach CoreDNS (their network works), and a Pod with the fleet's label reaches every one of
    those ports (they listen; the policy is what refuses). The fleet itself keeps working: every test after
    this one runs under the policy."""
    c = installed
    serving = c.get("rayservice", f"{FLEET}-serving")["status"]["activeServiceStatus"]["rayClusterName"]
    producer = c.get("rayjob", f"{FLEET}-producer")["status"]["rayClusterName"]
    fleet_ports = [
        f"{serving}-head-svc.{NS}.svc:8265",
        f"{serving}-head-svc.{NS}.svc:6379",
        f"{serving}-head-svc.{NS}.svc:10001",
        f"{FLEET}-serving-serve-svc.{NS}.svc:8000",
        f"{producer}-head-svc.{NS}.svc:8265",
        f"{producer}-head-svc.{NS}.svc:10001",
        f"{FLEET}-console.{NS}.svc:8090",
    ]
    dns = "kube-dns.kube-system.svc:53"
    c.kubectl("create", "namespace", "intruder", check=False)
    try:
        outsiders = [("intruder", probe_pod(c, "intruder", "probe", {})), (NS, probe_pod(c, NS, "stranger", {}))]
        insider = probe_pod(c, NS, "insider", {"camerafleet.io/fleet": FLEET})

        def answers(ns: str, pod: str) -> dict[str, str]:
            out = c.kubectl("exec", "-n", ns, pod, "--", "python", "-c", _PROBE, dns, *fleet_ports).stdout
            return dict(json.loads(out))

        for ns, pod in outsiders:
            seen = answers(ns, pod)
            assert seen[dns] == "open", f"the probe Pod {ns}/{pod} has no network at all: {seen}"
            opened = [target for target in fleet_ports if seen[target] == "open"]
            assert not opened, f"from {ns}/{pod} the fleet's {opened} answer: {seen}"
        # The agent adds a new Pod to the fleet's allowed sources when it sees it (seconds): retried, bounded.
        seen: dict[str, str] = {}

        def insider_reaches_all() -> bool:
            seen.update(answers(NS, insider))
            return all(seen[target] == "open" for target in fleet_ports)

        try:
            wait_for("a Pod with the fleet's label reaching every port of the fleet", insider_reaches_all, 120, 5)
        except AssertionError as err:
            raise AssertionError(f"the fleet's own Pods must reach each other: {seen}") from err
        report(
            "network policy",
            f"the fleet's {len(fleet_ports)} ports from another namespace: "
            f"{sorted({v for t, v in answers('intruder', 'probe').items() if t != dns})} (CoreDNS open); own Pod: open",
        )
    finally:
        c.kubectl("delete", "namespace", "intruder", "--wait=false", check=False)
        c.kubectl("delete", "pod", "stranger", "insider", "-n", NS, "--wait=false", check=False)


def job_log(c: Cluster, role: str) -> str:
    """A job's driver log, from its cluster's dashboard (HTTPMode: there is no submitter Pod to read)."""
    status = c.get("rayjob", f"{FLEET}-{role}")["status"]
    answer = dashboard(c, status["rayClusterName"], f"/api/jobs/{status['jobId']}/logs")
    return str((answer or {}).get("logs", ""))


def serve_deployments(c: Cluster, cluster: str | None = None) -> dict[str, Any]:
    """The fleet's Serve deployments as a serving cluster's dashboard reports them (default: the active cluster's),
    each with its replicas: actor id, state and the IP of the node (Pod) it runs on."""
    details = dashboard(c, cluster or _active_serving_cluster(c), "/api/serve/applications/") or {}
    app = next(iter((details.get("applications") or {}).values()), {})
    return dict(app.get("deployments") or {})


def serve_replicas(c: Cluster) -> dict[str, set[str]]:
    """Each Serve deployment's live replica actor ids."""
    return {name: {r["actor_id"] for r in d.get("replicas", []) if r.get("state") == "RUNNING"} for name, d in serve_deployments(c).items()}


def test_a_second_fleet_from_the_same_example_in_another_namespace_shares_nothing(installed: Cluster, fleet: dict[str, Any]) -> None:
    """Issue 24, tenancy on the cluster: the same manifest (fleet `example`, Kafka names unset), applied by a
    second team in namespace tenant-b against the same Kafka and bucket, runs on topics, a consumer group and
    a bucket folder of its own: both fleets Ready with balanced ledgers, each results topic holding only its
    own cameras' frames. Deleting the second (topicDeletionPolicy Delete) removes its topics only: the first
    fleet's topics, objects and lifecycle rule stay, and it stays Ready.

    The second team applies the example as the README's plain install does, Kafka and MinIO named by the stack's
    short Service names, which are Services in its namespace here (issue 23, defect 10): the operator, in
    camerafleet-system, must dial `camerafleet-kafka.tenant-b.svc` for the fleet's topics, and its Pods resolve
    both names in their namespace.

    It runs while the first fleet is at rest, before the tests that grow its pools and fault its nodes: two fleets
    of the production layout fill the CPU requests of this 2-core node (in one run, after the GPU node's fault,
    the first fleet still held two consumer workers and the second's consumer worker found no room)."""
    c = installed
    other_ns, other_own = "tenant-b", f"tenant-b.{FLEET}"
    c.kubectl("create", "namespace", other_ns, check=False)
    s3 = c.get("secret", "camerafleet-s3") or {}  # the second team's own copy of the S3 credentials
    c.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "camerafleet-s3", "namespace": other_ns}, "data": s3["data"]})
    front_the_nodes_kafka_and_minio(c, other_ns)
    doc = readme_fleet(c, short_names=True)
    assert doc["spec"]["kafka"]["bootstrapServers"] == "camerafleet-kafka:9092", doc["spec"]["kafka"]
    doc["metadata"]["namespace"] = other_ns
    doc["spec"]["kafka"]["topicDeletionPolicy"] = "Delete"
    # Issue 23, defect 9: heads take a placement. This team puts its heads on the tainted GPU pool, which only the
    # head's own nodeSelector and tolerations reach (the example's heads go to the untainted system pool).
    gpu_pool = {k: v for k, v in doc["spec"]["kubernetes"]["gpuWorkers"].items() if k in ("nodeSelector", "tolerations")}
    if LAYOUT == "production":
        doc["spec"]["kubernetes"]["head"].update(gpu_pool)
    own_topics = [*camera_topics(doc, other_own), f"{other_own}.results", f"{other_own}.deadletter"]
    asyncio.run(_fresh_kafka(c.kafka, own_topics))
    c.apply(doc)
    try:

        def second_ready() -> bool:
            status = (c.get("camerafleet", FLEET, other_ns) or {}).get("status") or {}
            return any(x["type"] == "Ready" and x["status"] == "True" for x in status.get("conditions", []))

        try:
            wait_for("the second fleet READY", second_ready, READY_TIMEOUT_S, 5)
        except AssertionError as err:  # say why: its conditions, and Pods the scheduler could not place
            status = (c.get("camerafleet", FLEET, other_ns) or {}).get("status") or {}
            conditions = [(x["type"], x["status"], x.get("message")) for x in status.get("conditions", [])]
            raise AssertionError(
                f"{err}; conditions {conditions}; unschedulable: {unschedulable(c, other_ns) + unschedulable(c, NS)}"
            ) from None
        first, second = c.get("camerafleet", FLEET)["status"], c.get("camerafleet", FLEET, other_ns)["status"]
        assert first["kafkaClusterId"] == second["kafkaClusterId"], "one Kafka"
        assert not set(first["topics"]) & set(second["topics"]), (first["topics"], second["topics"])
        assert sorted(second["createdTopics"]) == sorted(own_topics), second["createdTopics"]
        wait_for("frames of the second fleet processed", lambda: ledger(c, doc, own=other_own)["records"], RECOVERY_TIMEOUT_S, 10)
        for own, manifest in ((OWN, fleet), (other_own, doc)):
            book = ledger(c, manifest, own=own)
            assert not book["missing"], f"{own}: {len(book['missing'])} frames without a result"
            results = asyncio.run(_results(c.kafka, f"{own}.results"))
            strangers = {r["topic"] for r in results} - set(camera_topics(manifest, own))
            assert results and not strangers, f"{own}.results holds another fleet's frames: {strangers}"
        assert _has_objects(c, fleet, NS) and _has_objects(c, doc, other_ns), "each fleet's frames in its own folder"
        if LAYOUT == "production":
            nodes = {n["metadata"]["name"]: n["metadata"].get("labels", {}) for n in c.items("nodes")}
            heads = {p["metadata"]["name"]: p["spec"]["nodeName"] for p in c.items("pods", "-l", "ray.io/node-type=head", ns=other_ns)}
            on_pool = {n for n, labels in nodes.items() if gpu_pool["nodeSelector"].items() <= labels.items()}
            assert len(heads) == 3 and set(heads.values()) <= on_pool, f"the heads' placement: {heads}, the GPU pool {on_pool}"
        rules_before = _lifecycle_rules(c, fleet)
        assert len(rules_before) >= 2, f"each fleet's expiry rule in the bucket's lifecycle: {rules_before}"
    finally:
        c.kubectl("delete", "camerafleet", FLEET, "-n", other_ns, "--wait=true", "--timeout=600s", check=False)
    left = asyncio.run(_existing_topics(c.kafka))
    assert not set(own_topics) & left, f"the second fleet's topics were not deleted: {set(own_topics) & left}"
    assert set(camera_topics(fleet)) | {RESULTS, DEADLETTER} <= left, "the first fleet's topics are untouched"
    assert _has_objects(c, fleet, NS), "the first fleet's objects are untouched"
    first_rules = {r for r in rules_before if f"/{NS}/{FLEET}/" in r}
    assert first_rules and first_rules <= _lifecycle_rules(c, fleet), f"the first fleet's lifecycle rule is kept: {first_rules}"
    wait_for("the first fleet still READY", lambda: c.condition(FLEET, "Ready").get("status") == "True", RECOVERY_TIMEOUT_S, 5)
    book = ledger(c, fleet)
    assert not book["missing"], f"the first fleet lost {len(book['missing'])} frames"
    report(
        "two fleets from one example",
        f"topics, group and folder apart; deleting tenant-b's left default's intact ({book['announced']} frames)",
    )
    c.kubectl("delete", "namespace", other_ns, "--wait=false", check=False)


def test_a_model_edit_restarts_no_replica_of_another_model_and_the_edited_one_keeps_serving(
    installed: Cluster, fleet: dict[str, Any]
) -> None:
    """Issue 23, defect 5: one model's batching and replicas go per deployment (user_config, autoscaling_config),
    which Serve applies to running replicas; the app's args, hashed into every replica's version, stay."""
    c = installed
    before = wait_for("every deployment's replicas running", lambda: (r := serve_replicas(c)) and all(r.values()) and r, 300)
    models = [dict(m) for m in fleet["spec"]["models"]]
    faces = next(m for m in models if m["name"] == "faces")
    faces["batching"] = {**faces["batching"], "maxBatchSize": 8}
    patched = time.time()
    c.kubectl("patch", "camerafleet", FLEET, "--type=merge", "-p", json.dumps({"spec": {"models": models}}))
    fleet["spec"]["models"] = models

    def applied() -> dict[str, Any] | None:
        app = yaml.safe_load(c.get("rayservice", f"{FLEET}-serving")["spec"]["serveConfigV2"])["applications"][0]
        model = next(d for d in app["deployments"] if d["name"] == "model-faces")
        return app if model["user_config"]["maxBatchSize"] == 8 else None

    wait_for("the edit in the RayService's serveConfigV2", applied, 120)
    wait_for("frames processed by both models after the edit", lambda: [
        r for r in processed_since(c, fleet["spec"]["cameras"][0]["id"], int(patched * 1000) + 15000) if set(r["models"]) == {"faces", "health"}
    ], RECOVERY_TIMEOUT_S)  # fmt: skip
    after = serve_replicas(c)
    others = {k: v for k, v in before.items() if k != "model-faces"}
    assert {k: after.get(k) for k in others} == others, f"another deployment's replicas restarted: before {before}, after {after}"
    # The edited model's own replicas were reconfigured, not replaced (Serve's autoscaler may add or remove some meanwhile,
    # as the load changes: a replaced code version would leave none of them).
    kept = before["model-faces"] & after["model-faces"]
    assert kept, f"every faces replica was replaced: before {before['model-faces']}, after {after['model-faces']}"
    report(
        "model edit (faces maxBatchSize 16 -> 8)",
        f"ingress and health replicas unchanged; faces kept {len(kept)} of {len(before['model-faces'])} replicas "
        f"(now {len(after['model-faces'])}); frames processed by both models",
    )


def test_a_broken_model_edit_turns_the_fleet_not_ready_with_serves_message_and_the_fix_recovers(
    installed: Cluster, fleet: dict[str, Any]
) -> None:
    """Issue 23, defect 4: KubeRay's Ready counts healthy proxies, not the application: the fleet reads Serve's own
    status. Old replicas keep serving through a failed rollout, so no frame is lost meanwhile."""
    c = installed
    good = [dict(m) for m in fleet["spec"]["models"]]
    broken = [dict(m, modelUri="s3://camerafleet-frames/models/no-such-model.onnx") if m["name"] == "faces" else m for m in good]
    started = time.time()
    c.kubectl("patch", "camerafleet", FLEET, "--type=merge", "-p", json.dumps({"spec": {"models": broken}}))
    try:
        serving = wait_for(
            "ServingReady False with Serve's message",
            lambda: (s := c.condition(FLEET, "ServingReady")).get("reason") == "ServingFailed" and s,
            RECOVERY_TIMEOUT_S,
        )
        seen_s = time.time() - started
        assert serving["status"] == "False" and "no-such-model" in serving["message"], serving
        assert c.condition(FLEET, "Ready").get("status") == "False"
        assert c.items("events", "--field-selector", f"involvedObject.name={FLEET},reason=ServingFailed"), "a Warning event says so"
    finally:
        c.kubectl("patch", "camerafleet", FLEET, "--type=merge", "-p", json.dumps({"spec": {"models": good}}))
    wait_for("the fleet Ready again after the fix", lambda: c.condition(FLEET, "Ready").get("status") == "True", RECOVERY_TIMEOUT_S, 5)
    report("broken model edit", f"ServingReady False ({serving['reason']}) {seen_s:.0f} s after the edit; Ready again after the fix")
    _recovered(c, fleet, "broken model edit fixed", started)


def test_a_rayjob_kuberay_refused_is_replaced_by_the_next_edit_of_the_jobs_spec(installed: Cluster, fleet: dict[str, Any]) -> None:
    """Issue 23, defect 6: KubeRay checks a RayJob on every pass and, once it refused one (ValidationFailed), never
    looks at it again: only a new RayJob helps, and before the fix the fleet stayed Failed until someone deleted the
    RayJob by hand. The operator's own checks keep a fleet from rendering a RayJob KubeRay 1.6 refuses, so the
    refusal is made here as an admission policy's edit (or a newer KubeRay's stricter check) would make it: the live
    RayJob gains a setting KubeRay refuses, `rayStartParams.labels`. The fleet says so with KubeRay's message; the
    next edit of the jobs' spec replaces the RayJob, and every frame stays accounted for."""
    c = installed
    job = f"{FLEET}-producer"
    refused_uid = c.get("rayjob", job)["metadata"]["uid"]
    started = time.time()
    refusal = {"spec": {"rayClusterSpec": {"headGroupSpec": {"rayStartParams": {"labels": "team=x"}}}}}
    c.kubectl("patch", "rayjob", job, "--type=merge", "-p", json.dumps(refusal))
    ready = wait_for(
        "the fleet not Ready, InvalidSpec with KubeRay's message",
        lambda: (r := c.condition(FLEET, "Ready")).get("reason") == "InvalidSpec" and r,
        RECOVERY_TIMEOUT_S,
    )
    seen_s = time.time() - started
    assert ready["status"] == "False" and "labels" in ready["message"] and job in ready["message"], ready
    assert c.get("camerafleet", FLEET)["status"]["phase"] == "Failed"
    # The fix: the jobs' worker Pods ask for a little more memory (any change of the RayJob's spec would do).
    c.kubectl(
        "patch",
        "camerafleet",
        FLEET,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"kubernetes": {"jobWorkers": {"resources": {"memoryRequest": "1100Mi"}}}}}),
    )
    fleet["spec"]["kubernetes"].setdefault("jobWorkers", {}).setdefault("resources", {})["memoryRequest"] = "1100Mi"
    wait_for("a new producer RayJob running", lambda: (
        (j := c.get("rayjob", job)) and j["metadata"]["uid"] != refused_uid and (j.get("status") or {}).get("jobStatus") == "RUNNING"
    ), RECOVERY_TIMEOUT_S, 5)  # fmt: skip
    wait_for("the fleet Ready again", lambda: c.condition(FLEET, "Ready").get("status") == "True", RECOVERY_TIMEOUT_S, 5)
    replaced = c.items("events", "--field-selector", f"involvedObject.name={FLEET},reason=JobReplaced")
    assert replaced, "a JobReplaced event says the refused RayJob was replaced"
    report("RayJob refused by KubeRay", f"fleet InvalidSpec {seen_s:.0f} s after the refusal; replaced by the next edit and Ready again")
    _recovered(c, fleet, "refused RayJob replaced", started)


def _active_serving_cluster(c: Cluster) -> str:
    return str(c.get("rayservice", f"{FLEET}-serving")["status"]["activeServiceStatus"]["rayClusterName"])


def _patch_kubernetes(c: Cluster, fleet: dict[str, Any], change: dict[str, Any]) -> None:
    c.kubectl("patch", "camerafleet", FLEET, "--type=merge", "-p", json.dumps({"spec": {"kubernetes": change}}))
    fleet["spec"]["kubernetes"] = {**fleet["spec"]["kubernetes"], **change}


def test_a_new_image_tag_rolls_out_on_a_new_serving_cluster_and_replaces_the_jobs_with_nothing_lost(
    installed: Cluster, fleet: dict[str, Any]
) -> None:
    """Issue 23, upgrades: a new image for the fleet is a cluster-level change. With servingUpgrade NewCluster
    (the default) KubeRay brings a second serving cluster up and switches once its app runs; the jobs are
    replaced (drained by their preStop hooks); every announced frame still ends with a result."""
    c = installed
    image = RAY_IMAGE.rsplit(":", 1)[0] + ":e2e-upgrade"
    for socket in node_sockets():  # the same build under a new tag, on every node
        c.run("ctr", "--address", str(socket), "-n", "k8s.io", "images", "tag", "--force", RAY_IMAGE, image)
    old_cluster = _active_serving_cluster(c)
    jobs = {r: c.get("rayjob", f"{FLEET}-{r}")["metadata"]["uid"] for r in ("producer", "consumer")}
    seen: set[str] = set()
    started = time.time()
    sample_storage(c)
    _patch_kubernetes(c, fleet, {"image": image})

    def switched() -> bool:
        seen.add(c.condition(FLEET, "ServingUpToDate").get("reason", ""))
        return _active_serving_cluster(c) != old_cluster and c.condition(FLEET, "Ready").get("status") == "True"

    wait_for("the new serving cluster active and the fleet Ready", switched, RECOVERY_TIMEOUT_S, 5)
    switch_s = time.time() - started
    service = c.get("rayservice", f"{FLEET}-serving")
    assert service["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"] == image
    wait_for("both jobs replaced and running", lambda: all(
        (j := c.get("rayjob", f"{FLEET}-{r}")) and j["metadata"]["uid"] != jobs[r] and (j.get("status") or {}).get("jobStatus") == "RUNNING"
        for r in jobs
    ), RECOVERY_TIMEOUT_S, 5)  # fmt: skip
    _recovered(c, fleet, "image upgraded", started)
    sample_storage(c)
    report(
        "image upgrade (NewCluster)",
        f"new serving cluster active {switch_s:.0f} s after the patch; ServingUpToDate reasons seen {sorted(seen - {''})}",
    )


def test_a_serving_cluster_that_cannot_come_up_is_reported_within_the_upgrade_timeout(installed: Cluster, fleet: dict[str, Any]) -> None:
    """A cluster-level change the cluster has no room for: the fleet names the Pod no node fits with the real
    scheduler's reason (PodsScheduled False) after schedulingTimeoutSeconds. KubeRay's Ready stays True and it
    waits forever; the fleet says so (ServingUpToDate False, UpgradeStalled, a Warning Event) within
    upgradeTimeoutSeconds plus a resync, while the old cluster keeps serving. Reverting the change recovers.

    On the small node the new cluster's head serves the models (headRunsWork), so KubeRay switches to it while its
    worker Pod stays Pending (seen in the run of 2026-12-05): nothing stalls there, and only PodsScheduled tells."""
    c = installed
    heads_serve = fleet["spec"]["kubernetes"].get("headRunsWork", False)
    original = dict(fleet["spec"]["kubernetes"])
    workers = fleet["spec"]["kubernetes"]["gpuWorkers"]
    too_big = {**workers, "resources": {**workers["resources"], "memory": "500Gi", "memoryRequest": "500Gi"}}
    started = time.time()
    _patch_kubernetes(c, fleet, {"gpuWorkers": too_big, "upgradeTimeoutSeconds": 60, "schedulingTimeoutSeconds": 30})
    try:
        # The real kube-scheduler's verdict on the new cluster's worker Pod, read by the operator (Pods: list only).
        unplaced = wait_for(
            "PodsScheduled False (Unschedulable)",
            lambda: (u := c.condition(FLEET, "PodsScheduled")).get("reason") == "Unschedulable" and u,
            RECOVERY_TIMEOUT_S,
            5,
        )
        unplaced_s = time.time() - started
        assert unplaced["status"] == "False", unplaced
        for part in ("500Gi", "Insufficient memory", "kubernetes.gpuWorkers.resources"):
            assert part in unplaced["message"], (part, unplaced["message"])
        assert c.items("events", "--field-selector", f"involvedObject.name={FLEET},reason=Unschedulable"), "a Warning Event names the Pod"
        stalled_s = None
        if not heads_serve:
            stalled = wait_for(
                "ServingUpToDate False (UpgradeStalled)",
                lambda: (u := c.condition(FLEET, "ServingUpToDate")).get("reason") == "UpgradeStalled" and u,
                RECOVERY_TIMEOUT_S,
                5,
            )
            stalled_s = time.time() - started
            assert stalled["status"] == "False" and "kubectl get pods -l ray.io/cluster=" in stalled["message"], stalled
            assert c.condition(FLEET, "ServingReady").get("status") == "True", "the old cluster keeps serving"
            assert c.items("events", "--field-selector", f"involvedObject.name={FLEET},reason=UpgradeStalled"), "a Warning Event says so"
            assert processed_since(c, fleet["spec"]["cameras"][0]["id"], int(started * 1000)), "frames flow meanwhile"
    finally:
        c.kubectl("patch", "camerafleet", FLEET, "--type=json", "-p", json.dumps([
            {"op": "replace", "path": "/spec/kubernetes/gpuWorkers", "value": workers},
            {"op": "remove", "path": "/spec/kubernetes/upgradeTimeoutSeconds"},
            {"op": "remove", "path": "/spec/kubernetes/schedulingTimeoutSeconds"},
        ]))  # fmt: skip
        fleet["spec"]["kubernetes"] = original
    wait_for(
        "Ready, ServingUpToDate and PodsScheduled True after the revert",
        lambda: all(c.condition(FLEET, t).get("status") == "True" for t in ("Ready", "ServingUpToDate", "PodsScheduled")),
        RECOVERY_TIMEOUT_S,
        5,
    )
    stall = "" if stalled_s is None else f"; ServingUpToDate False (UpgradeStalled) after {stalled_s:.0f} s (timeout 60 s)"
    report(
        "serving cluster without room",
        f"PodsScheduled False (Unschedulable, the scheduler's reason) {unplaced_s:.0f} s after the change (timeout 30 s){stall}"
        f"{'; KubeRay switched to the new cluster, whose head serves' if heads_serve else ''}; reverting recovered",
    )


def test_rays_autoscaler_adds_a_serving_worker_pod_for_replicas_and_removes_it_after(installed: Cluster, fleet: dict[str, Any]) -> None:
    """Autoscaler v2, set explicitly: four replicas of the faces model (0.5 CPU each) do not fit one worker of
    2 CPUs beside the ingress and the health model, so Ray adds a worker Pod (on the GPU pool); back to one
    replica, the idle Pod goes.

    Serve's scale-down stops a deployment's replicas on the node with the fewest replicas of all deployments first,
    and breaks a tie by its own order: the added Pod empties only when it holds fewer than the first. Starting from
    one faces replica (the ingress, health and faces on the first worker, 1 of its 2 CPUs) makes it so: Ray's
    SPREAD placement puts two new replicas in that room at once and only the third waits for the added Pod. From
    the fleet's own autoscaled state (faces at 1 to 4 replicas, some perhaps being stopped and still holding their
    room) the two nodes could tie at three, and the last faces replica stay on the added Pod.

    The emptied Pod goes idle only once Serve's proxy there has drained. The consumer's keep-alive connections,
    opened while the Pod was Ready, kept it DRAINING until the transport began replacing its connections every
    20 s (`transport.CONNECTION_MAX_AGE_S`; session 25's failure)."""
    c = installed
    if fleet["spec"]["kubernetes"]["gpuWorkers"].get("maxReplicas", 1) < 2:
        pytest.skip(f"the {LAYOUT} layout allows one serving worker (gpuWorkers.maxReplicas 1): nothing to scale to")
    cluster = _active_serving_cluster(c)
    selector = f"ray.io/cluster={cluster},ray.io/node-type=worker"
    models = [dict(m) for m in fleet["spec"]["models"]]
    faces = next(m for m in models if m["name"] == "faces")
    calm = dict(faces["autoscaling"])

    def set_replicas(least: int, most: int) -> None:
        faces["autoscaling"] = {**calm, "minReplicas": least, "maxReplicas": most}
        c.kubectl("patch", "camerafleet", FLEET, "--type=merge", "-p", json.dumps({"spec": {"models": models}}))

    def worker_pods() -> list[str]:
        return [p["metadata"]["name"] for p in c.items("pods", "-l", selector)]

    def one_faces_replica_on_one_worker() -> bool:
        states = Counter(r.get("state") for r in serve_deployments(c).get("model-faces", {}).get("replicas", []))
        return states == {"RUNNING": 1} and len(worker_pods()) == 1

    def replicas_by_pod() -> Counter[str]:
        pods = _pods_by_ip(c, selector)
        return Counter(
            pods.get(r.get("node_ip"), str(r.get("node_ip")))
            for d in serve_deployments(c).values()
            for r in d.get("replicas", [])
            if r.get("state") == "RUNNING"
        )

    try:
        set_replicas(1, 1)
        try:
            wait_for("faces at one replica, on one serving worker Pod", one_faces_replica_on_one_worker, RECOVERY_TIMEOUT_S, 5)
        except AssertionError as err:
            raise AssertionError(f"{err}\n{_scheduling_state(c, cluster, selector)}") from None
        [first] = worker_pods()
        before = wait_for("every deployment's replicas running", lambda: (r := serve_replicas(c)) and all(r.values()) and r, 300)
        started = time.time()
        set_replicas(4, max(4, calm.get("maxReplicas", 1)))
        try:
            wait_for("a second serving worker Pod Running", lambda: sum(
                p["status"].get("phase") == "Running" for p in c.items("pods", "-l", selector)
            ) >= 2, RECOVERY_TIMEOUT_S, 5)  # fmt: skip
        except AssertionError as err:
            raise AssertionError(f"{err}\n{_scheduling_state(c, cluster, selector)}") from None
        up_s = time.time() - started
        wait_for("four faces replicas running", lambda: len(serve_replicas(c).get("model-faces", set())) >= 4, RECOVERY_TIMEOUT_S, 5)
        # Issue 23, defect 5: a model's minReplicas is a lightweight update: no replica is replaced.
        after = serve_replicas(c)
        assert all(before[k] <= after.get(k, set()) for k in before), f"a replica was replaced: before {before}, after {after}"
        nodes = {n["metadata"]["name"]: n["metadata"].get("labels", {}) for n in c.items("nodes")}
        assert all(nodes[p["spec"]["nodeName"]].get("nvidia.com/gpu.present") == "true" for p in c.items("pods", "-l", selector))
        placed = replicas_by_pod()
        [added] = [p for p in worker_pods() if p != first]
        assert placed[added] < placed[first], (
            f"Serve's replicas by Pod {dict(placed)}: the added Pod {added} must hold fewer than {first} to be emptied "
            "first on the scale-down (the first worker's free room was not used at once)"
        )
    finally:
        # One replica at most: under the fleet's load Serve's own autoscaler would keep several (and with them the Pod).
        set_replicas(1, 1)
    down = time.time()
    try:
        try:
            wait_for("the idle serving worker Pod removed", lambda: worker_pods() == [first], RECOVERY_TIMEOUT_S, 5)
        except AssertionError as err:
            raise AssertionError(f"{err}\n{_scheduling_state(c, cluster, selector)}") from None
    finally:
        faces["autoscaling"] = calm
        c.kubectl("patch", "camerafleet", FLEET, "--type=merge", "-p", json.dumps({"spec": {"models": models}}))
    report(
        "Ray autoscaler (v2)",
        f"a second serving worker Pod Running {up_s:.0f} s after faces minReplicas 4 (Serve's replicas by Pod "
        f"{sorted(placed.values(), reverse=True)}); removed {time.time() - down:.0f} s after maxReplicas 1 (Serve stops "
        "the replicas on the node with the fewest first, so the added Pod went idle)",
    )


def _pool_status(c: Cluster, pool: str) -> dict[str, Any]:
    return ((c.get("camerafleet", FLEET) or {}).get("status") or {}).get("pools", {}).get(pool) or {}


def test_a_growing_producer_pool_brings_a_job_worker_pod_and_a_shrinking_one_lets_it_go(installed: Cluster, fleet: dict[str, Any]) -> None:
    """Issue 25 on Kubernetes: the producer pool's autoscaling bounds raised to one actor more than the job's Ray
    cluster holds (its CPUs as Ray counts them: the worker Pods', plus the head's in the small-node layout), so
    the new actor waits until Ray's autoscaler has KubeRay add a worker Pod; the run says so in the fleet's
    `status.pools`. Back to the fixed pool, the newest actors go first, their Pod goes idle and is removed."""
    c = installed
    head = c.get("rayjob", f"{FLEET}-producer")["status"]["rayClusterName"]
    selector = f"ray.io/cluster={head},ray.io/node-type=worker"
    nodes = dashboard(c, head, "/api/v0/nodes?limit=100")["data"]["result"]["result"]
    cpus = sum(n["resources_total"].get("CPU", 0) for n in nodes if n["state"] == "ALIVE")
    per_actor = fleet["spec"]["producer"].get("cpusPerActor", 0.5)
    grown = int(cpus / per_actor) + 1
    before = len(c.items("pods", "-l", selector))
    fixed = fleet["spec"]["producer"]

    def set_producer(producer: dict[str, Any]) -> None:
        c.kubectl("patch", "camerafleet", FLEET, "--type=merge", "-p", json.dumps({"spec": {"producer": producer}}))

    started = time.time()
    set_producer({"actors": grown, "autoscaling": {"minActors": grown, "maxActors": grown}})
    try:
        try:
            wait_for(
                f"{grown} producer actors in status.pools",
                lambda: _pool_status(c, "producer").get("actors") == grown,
                RECOVERY_TIMEOUT_S,
                5,
            )
        except AssertionError as err:
            raise AssertionError(f"{err}\n{_scheduling_state(c, head, selector)}") from None
        up_s = time.time() - started
        pods_grown = [p for p in c.items("pods", "-l", selector) if p["status"].get("phase") == "Running"]
        assert len(pods_grown) == before + 1, [p["metadata"]["name"] for p in pods_grown]
        status = _pool_status(c, "producer")
        assert status["desiredActors"] == grown and status["nodes"] >= 2, status
        assert status["lastScaleReason"] == "manifest", status
    finally:
        set_producer({"actors": fixed["actors"], "autoscaling": None})
    down = time.time()
    wait_for(
        f"{fixed['actors']} producer actors in status.pools",
        lambda: _pool_status(c, "producer").get("actors") == fixed["actors"],
        RECOVERY_TIMEOUT_S,
        5,
    )
    # Ray's autoscaler lets a worker go after it has been idle for 60 s (KubeRay's idleTimeoutSeconds default).
    wait_for(f"{before} producer worker Pod(s) again", lambda: len(c.items("pods", "-l", selector)) == before, RECOVERY_TIMEOUT_S, 5)
    report(
        "producer pool on Kubernetes",
        f"{grown} actors (the cluster held {cpus:g} CPUs = {int(cpus / per_actor)} actors): all placed {up_s:.0f} s after the edit, "
        f"job worker Pods {before} -> {before + 1}; back to {fixed['actors']} actors: Pods {before + 1} -> {before} "
        f"{time.time() - down:.0f} s after the edit",
    )


def test_the_operator_chart_upgraded_with_a_crd_change_adopts_the_running_fleet(
    installed: Cluster, fleet: dict[str, Any], tmp_path: Path
) -> None:
    """The README's operator upgrade, with what a next release ships: a new operator image and a changed CRD (the
    next chart here is this one with an `Image` column added to the CRD and its image retagged). Helm applies a
    chart's crds/ on the first install only, so the README applies the CRD first, then `helm upgrade`. The new
    operator adopts the running fleet: nothing it runs is replaced, frames keep flowing and are all accounted."""
    c = installed
    chart = tmp_path / "camerafleet-operator"
    shutil.copytree(ROOT / "charts" / "camerafleet-operator", chart)
    [crd_file] = (chart / "crds").glob("*.yaml")
    crd = yaml.safe_load(crd_file.read_text())
    crd["spec"]["versions"][0]["additionalPrinterColumns"].insert(
        1, {"name": "Image", "type": "string", "jsonPath": ".spec.kubernetes.image"}
    )
    crd_file.write_text(yaml.safe_dump(crd, sort_keys=False))
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    (chart / "Chart.yaml").write_text(yaml.safe_dump({**meta, "version": f"{meta['version']}-next"}, sort_keys=False))
    tag = "e2e-next"
    for socket in node_sockets():  # the same build under the next release's tag, on every node
        c.run(
            "ctr",
            "--address",
            str(socket),
            "-n",
            "k8s.io",
            "images",
            "tag",
            "--force",
            OPERATOR_IMAGE,
            f"{OPERATOR_IMAGE.rsplit(':', 1)[0]}:{tag}",
        )
    kept = {(kind, name): c.get(kind, name) for kind, name in _fleet_objects()}
    [old_pod] = c.items("pods", "-l", "app.kubernetes.io/name=camerafleet-operator", ns=OPERATOR_NS)
    started = time.time()
    c.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(chart / "crds"))  # the README's step, verbatim but for the path
    c.helm("upgrade", "camerafleet-operator", str(chart), "-n", OPERATOR_NS, *OPERATOR_VALUES, "--set", f"image.tag={tag}")
    ready: list[str] = []

    def new_operator_running() -> bool:
        ready.append(c.condition(FLEET, "Ready").get("status", ""))
        return any(
            p["metadata"]["uid"] != old_pod["metadata"]["uid"] and p["spec"]["containers"][0]["image"].endswith(f":{tag}") and pod_ready(p)
            for p in c.items("pods", "-l", "app.kubernetes.io/name=camerafleet-operator", ns=OPERATOR_NS)
        )

    wait_for("the upgraded operator Pod ready", new_operator_running, RECOVERY_TIMEOUT_S)
    upgraded_s = time.time() - started
    header = c.kubectl("get", "camerafleet", FLEET).stdout.splitlines()[0].split()
    assert "IMAGE" in header, f"the new CRD's column is missing: {header}"
    # A resync later (30 s in the chart) the new operator has reconciled the fleet once at least.
    time.sleep(45)
    ready.append(c.condition(FLEET, "Ready").get("status", ""))
    assert set(ready) == {"True"}, f"the fleet left Ready during the operator's upgrade: {ready}"
    for (kind, name), before in kept.items():
        after = c.get(kind, name)
        assert after["metadata"]["uid"] == before["metadata"]["uid"] and after["spec"] == before["spec"], f"{kind} {name} was changed"
    _recovered(c, fleet, "operator chart upgraded", started)
    report(
        "operator chart upgrade (CRD column added, new image tag)",
        f"new operator Pod ready {upgraded_s:.0f} s after `kubectl apply --server-side --force-conflicts` + `helm upgrade`; the fleet stayed Ready, "
        "its RayService and RayJobs unchanged",
    )


def _fleet_objects() -> list[tuple[str, str]]:
    return [("rayservice", f"{FLEET}-serving"), ("rayjob", f"{FLEET}-producer"), ("rayjob", f"{FLEET}-consumer")]


def test_no_pods_disk_grows_without_bound(installed: Cluster, fleet: dict[str, Any]) -> None:
    """Issue 23: what the Pods write to their own disks is Ray's logs, rotated small (the results go to Kafka, the
    summaries to the bucket). Each Pod's ephemeral storage, as its kubelet measures it, stays far below a bound."""
    c = installed
    now = sample_storage(c)
    assert now, "the kubelets report no storage for the fleet's Pods"
    first: dict[str, tuple[float, int]] = {}
    for t, used in storage_samples:
        for pod, size in used.items():
            first.setdefault(pod, (t, size))
    t_now = storage_samples[-1][0]
    lines = [
        f"{pod} {first[pod][1] / 2**20:.0f} -> {size / 2**20:.0f} MiB over {(t_now - first[pod][0]) / 60:.0f} min"
        for pod, size in sorted(now.items())
    ]
    report("Pods' ephemeral storage (kubelet Summary API)", "; ".join(lines))
    assert all(size < STORAGE_BOUND for size in now.values()), f"a Pod's disk holds over {STORAGE_BOUND >> 20} MiB: {lines}"


def _pods_by_ip(c: Cluster, selector: str) -> dict[str, str]:
    """Pod names by Pod IP: the node IP Ray reports for an actor is its Pod's."""
    return {p["status"].get("podIP"): p["metadata"]["name"] for p in c.items("pods", "-l", selector)}


def _scheduling_state(c: Cluster, cluster: str, selector: str) -> str:
    """Why a worker Pod may not have come or gone: the group's Pods and their conditions, the nodes' requests, what
    Ray's autoscaler says (its status through the dashboard; empty with autoscaler v2) and Serve's replicas by state
    and Pod."""
    pods = [
        f"{p['metadata']['name']} {p['status'].get('phase')} on {p['spec'].get('nodeName')}: "
        + "; ".join(f"{x['type']}={x['status']} {x.get('message', '')}" for x in p["status"].get("conditions", []) if x["status"] != "True")
        for p in c.items("pods", "-l", selector)
    ]
    nodes = c.kubectl("describe", "nodes", check=False).stdout
    allocated = [line.strip() for line in nodes.splitlines() if line.strip().startswith(("Name:", "cpu ", "memory "))]
    status = dashboard(c, cluster, "/api/cluster_status") or {}
    report_text = json.dumps(status.get("data", status))[:3000]
    pods_by_ip = _pods_by_ip(c, f"ray.io/cluster={cluster}")
    replicas = {
        name: Counter(f"{r.get('state')} on {pods_by_ip.get(r.get('node_ip'), r.get('node_ip'))}" for r in d.get("replicas", []))
        for name, d in serve_deployments(c, cluster).items()
    }
    return (
        "Pods:\n  " + "\n  ".join(pods) + "\nNodes:\n  " + "\n  ".join(allocated) + f"\nRay autoscaler: {report_text}"
        f"\nServe replicas by state and Pod: {replicas}"
    )


def _recovered(c: Cluster, fleet: dict[str, Any], name: str, started: float) -> None:
    """After a fault: frames of every camera processed again, then the ledger balances (nothing lost)."""
    since = int(started * 1000)
    for camera in (cam["id"] for cam in fleet["spec"]["cameras"]):
        wait_for(
            f"camera {camera} processed again after {name}", lambda camera=camera: processed_since(c, camera, since), RECOVERY_TIMEOUT_S, 2
        )
    recovery_s = time.time() - started
    book = ledger(c, fleet)
    assert not book["missing"], f"{name}: {len(book['missing'])} announced frames without a result"
    by_outcome = Counter()
    for (_, outcome, reason), n in book["outcomes"].items():
        by_outcome[f"{outcome}{':' + reason if reason else ''}"] += n
    report(
        name,
        f"frames of every camera processed again {recovery_s:.0f} s after the fault; ledger: {book['announced']} announced, none missing, {dict(by_outcome)}",
    )


def pod_ready(pod: dict[str, Any]) -> bool:
    """The Pod's Ready condition (a Pod just created has no container statuses yet, which `all` would take as ready)."""
    return any(x["type"] == "Ready" and x["status"] == "True" for x in pod["status"].get("conditions", []))


def _replacement_ready(c: Cluster, selector: str, gone: str, started: float) -> float:
    """Seconds from the fault until a Pod matching `selector`, other than `gone`, is Ready."""

    def ready() -> bool:
        return any(p["metadata"]["uid"] != gone and pod_ready(p) for p in c.items("pods", "-l", selector))

    wait_for(f"a new Pod for {selector} Ready", ready, RECOVERY_TIMEOUT_S)
    return time.time() - started


def test_fault_the_serve_worker_pod_is_deleted(installed: Cluster, fleet: dict[str, Any]) -> None:
    c = installed
    cluster = c.get("rayservice", f"{FLEET}-serving")["status"]["activeServiceStatus"]["rayClusterName"]
    selector = f"ray.io/cluster={cluster},ray.io/node-type=worker"
    worker, *others = c.items("pods", "-l", selector)  # one of them, where the autoscaler keeps more than one
    started = time.time()
    c.kubectl("delete", "pod", worker["metadata"]["name"], "--wait=false")
    ready_s = _replacement_ready(c, selector, worker["metadata"]["uid"], started)
    measured["Serve worker Pod deleted: a worker Pod Ready"] = (
        f"{ready_s:.0f} s" if not others else f"throughout ({len(others)} other worker Pod(s) of the autoscaled group kept serving)"
    )
    _recovered(c, fleet, "Serve worker Pod deleted", started)


def test_fault_the_consumer_jobs_head_pod_is_deleted(installed: Cluster, fleet: dict[str, Any]) -> None:
    """Issue 23, defect 11: a job's head lost (a failed liveness probe on a loaded node, an eviction) costs the fleet
    neither its RayJob nor its job cluster. In HTTPMode KubeRay recreates the head and, finding the job unknown
    there, submits it again; nothing follows a log stream that could end."""
    c = installed
    job = c.get("rayjob", f"{FLEET}-consumer")
    failures = c.get("camerafleet", FLEET)["status"]["consumerJob"]["failures"]
    cluster = job["status"]["rayClusterName"]
    [pod] = c.items("pods", "-l", f"ray.io/cluster={cluster},ray.io/node-type=head")
    started = time.time()
    c.kubectl("delete", "pod", pod["metadata"]["name"], "--wait=false")
    _recovered(c, fleet, "consumer job's head Pod deleted", started)
    after = c.get("rayjob", f"{FLEET}-consumer")
    assert after["metadata"]["uid"] == job["metadata"]["uid"] and after["status"]["rayClusterName"] == cluster, (
        "the RayJob and its cluster stay"
    )
    assert after["status"]["jobDeploymentStatus"] == "Running", after["status"]
    assert c.get("camerafleet", FLEET)["status"]["consumerJob"]["failures"] == failures, "the RayJob never failed"
    measured["consumer job's head Pod deleted: RayJob"] = (
        "kept (same RayJob and RayCluster, never Failed); the job submitted again by KubeRay"
    )


def test_fault_the_operator_pod_is_deleted(installed: Cluster, fleet: dict[str, Any]) -> None:
    c = installed
    [pod] = c.items("pods", "-l", "app.kubernetes.io/name=camerafleet-operator", ns=OPERATOR_NS)
    started = time.time()
    c.kubectl("delete", "pod", pod["metadata"]["name"], "-n", OPERATOR_NS, "--wait=false")
    wait_for(
        "a new operator Pod ready",
        lambda: [
            p for p in c.items("pods", "-l", "app.kubernetes.io/name=camerafleet-operator", ns=OPERATOR_NS)
            if p["metadata"]["uid"] != pod["metadata"]["uid"] and pod_ready(p)
        ],
        RECOVERY_TIMEOUT_S,
    )  # fmt: skip
    measured["operator Pod deleted: new Pod ready"] = f"{time.time() - started:.0f} s"
    assert c.condition(FLEET, "Ready").get("status") == "True", "the fleet does not depend on the operator Pod to run"
    _recovered(c, fleet, "operator Pod deleted", started)


def test_fault_the_kubelet_restarts(installed: Cluster, fleet: dict[str, Any]) -> None:
    c = installed
    pods = {p["metadata"]["uid"] for p in c.items("pods", "-l", "ray.io/is-ray-node=yes")}
    started = time.time()
    c.run(sys.executable, "-m", "camerafleet_dev.cluster", "restart-kubelet", "--data-dir", str(CLUSTER_DIR))

    def reported_since_restart() -> bool:
        # Ready as posted by the restarted kubelet: the condition stays True for the node-monitor grace period
        # (40 s) after a kubelet stops reporting, so a heartbeat older than the restart proves nothing.
        conditions = json.loads(c.kubectl("get", "node", "camerafleet-node", "-o", "json").stdout)["status"]["conditions"]
        ready = next(x for x in conditions if x["type"] == "Ready")
        return ready["status"] == "True" and datetime.fromisoformat(ready["lastHeartbeatTime"]).timestamp() > started

    wait_for("the restarted kubelet reporting the node Ready", reported_since_restart, RECOVERY_TIMEOUT_S)
    _recovered(c, fleet, "kubelet restarted", started)
    # Every Ray Pod of before is still there. A new one may have come meanwhile: the frames that waited while the
    # kubelet was away can make Serve ask Ray's autoscaler for a worker (a run of 2026-12-05 got one on the other node).
    after = {p["metadata"]["uid"]: p["metadata"]["name"] for p in c.items("pods", "-l", "ray.io/is-ray-node=yes")}
    assert pods <= after.keys(), f"a kubelet restart replaced Pods: {len(pods - after.keys())} of {len(pods)} gone"
    if added := sorted(name for uid, name in after.items() if uid not in pods):
        report("kubelet restarted: Pods added meanwhile", ", ".join(added))


def test_fault_the_gpu_node_stops_and_comes_back(installed: Cluster, fleet: dict[str, Any]) -> None:
    """Issue 23: the GPU pool's node dies (its kubelet, kube-proxy, containerd and every container killed, nothing told
    to the API server). Its model replicas cannot go elsewhere (only that pool tolerates its taint): the fleet waits
    visibly (the node NotReady, ServingReady False with Serve's message) while producers and consumers keep
    accounting every frame; back, the node takes the replicas again and nothing is lost."""
    c = installed
    nodes = c.env.get("CAMERAFLEET_NODES", "").split(",")
    if len(nodes) < 2 or LAYOUT != "production":
        pytest.skip(f"{LAYOUT} layout on nodes {nodes}: nothing of the fleet runs on a second node")
    node = nodes[1]
    serving = _active_serving_cluster(c)
    there = [p["metadata"]["name"] for p in c.items("pods", "-l", f"ray.io/cluster={serving}") if p["spec"].get("nodeName") == node]
    assert there, f"no serving Pod on {node}"
    fault = [sys.executable, "-m", "camerafleet_dev.cluster", "--data-dir", str(CLUSTER_DIR), "--node", node]
    started = time.time()
    c.run(*fault[:3], "stop-node", *fault[3:])
    try:
        wait_for(f"{node} NotReady", lambda: c.condition_of_node(node, "Ready").get("status") != "True", RECOVERY_TIMEOUT_S, 5)
        not_ready_s = time.time() - started
        serving_down = wait_for(
            "ServingReady False", lambda: (s := c.condition(FLEET, "ServingReady")).get("status") == "False" and s, RECOVERY_TIMEOUT_S, 5
        )
        visible_s = time.time() - started
        assert c.condition(FLEET, "Ready").get("status") == "False", "the fleet's Ready follows its serving"
    finally:
        c.run(*fault[:3], "start-node", *fault[3:])
    back = time.time()
    wait_for(f"{node} Ready again", lambda: c.condition_of_node(node, "Ready").get("status") == "True", RECOVERY_TIMEOUT_S, 5)
    wait_for("the fleet Ready again", lambda: c.condition(FLEET, "Ready").get("status") == "True", RECOVERY_TIMEOUT_S, 5)
    report(
        f"{node} stopped (GPU pool)",
        f"NotReady {not_ready_s:.0f} s, ServingReady False {visible_s:.0f} s after the fault ({serving_down['reason']}: "
        f"{serving_down['message'][:160]}); the fleet Ready again {time.time() - back:.0f} s after the node came back",
    )
    _recovered(c, fleet, f"{node} stopped and started again", started)


def _lifecycle_rules(c: Cluster, fleet: dict[str, Any]) -> set[str]:
    client, name, _ = bucket(c, fleet)
    config = client.get_bucket_lifecycle(name)
    return {r.rule_id for r in (config.rules if config else [])}


def _has_objects(c: Cluster, fleet: dict[str, Any], ns: str) -> bool:
    client, name, folder = bucket(c, fleet, ns)
    return next(iter(client.list_objects(name, prefix=folder, recursive=True)), None) is not None


async def _existing_topics(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


def _events_state(c: Cluster, since_ms: int) -> str:
    """Why no event came: the fleet's conditions, the lobby's results by outcome, and what the jobs said of it."""
    status = (c.get("camerafleet", FLEET) or {}).get("status") or {}
    conditions = [f"{x['type']}={x['status']} {x.get('reason', '')}: {x.get('message', '')[:200]}" for x in status.get("conditions", [])]
    results = [r for r in asyncio.run(_results(c.kafka, RESULTS)) if r["cameraId"] == "lobby"]
    outcomes = Counter((r["outcome"], r.get("reason")) for r in results)
    faces = sum(len((r.get("models") or {}).get("faces", {}).get("detections") or []) for r in results)
    said = {
        role: [line for line in job_log(c, role).splitlines() if "lobby" in line or "events" in line.lower()][-15:]
        for role in ("producer", "consumer")
    }
    return (
        "Fleet:\n  "
        + "\n  ".join(conditions)
        + f"\nLobby results since the patch: {len([r for r in results if (r.get('captureTsMs') or 0) >= since_ms])}, "
        f"by outcome {dict(outcomes)}, {faces} faces\nJobs:\n" + json.dumps(said, indent=1)[:6000]
    )


# The whole 1280x720 frame, less a margin: the demo clip's poster face stands in it throughout.
HALL = {"name": "hall", "points": [[10, 10], [1270, 10], [1270, 710], [10, 710]], "anchor": "center", "labels": ["face"]}


def test_events_on_kubernetes_a_live_camera_of_faces_gives_tracks_events_and_a_timeline(
    installed: Cluster, fleet: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Issue 26 on the cluster: events enabled with kubectl patch, and a live MJPEG camera of faces (the demo clip,
    served on the node's address, where the producer Pods reach it like a camera on the site's network). The
    operator creates the stage's topics and the consumer job runs it: the events topic gets the camera's tracks and
    its zone visit, the tracks topic each tracked frame's ids, and the console's timeline lists them. Turned off
    again, the fleet is Ready as before."""
    c = installed
    node = c.kafka.rsplit(":", 1)[0]  # the node's address, where Kafka and MinIO listen too
    frames = write_demo_frames(tmp_path_factory.mktemp("lobby-frames"), "camera_1", seconds=6, width=1280, height=720, fps=10)
    server = CameraServer(frames, tmp_path_factory.mktemp("lobby-camera"), mjpeg=["lobby"], fps=10, address=node)
    lobby = {"id": "lobby", "source": server.mjpeg_url("lobby"), "inferenceFps": 2, "zones": [HALL]}
    before = {"cameras": fleet["spec"]["cameras"], "events": fleet["spec"].get("events") or {"enabled": False}}
    topics = {"events": f"{OWN}.events", "tracks": f"{OWN}.events.tracks"}

    def lobby_events() -> list[dict[str, Any]] | None:
        mine = [e for e in asyncio.run(_results(c.kafka, topics["events"], "read_committed")) if e["cameraId"] == "lobby"]
        kinds = {(e["kind"], e["phase"]) for e in mine}
        return mine if {("object", "start"), ("zone", "start")} <= kinds else None

    server.start()
    patched = time.time()
    try:
        change = {"cameras": [*before["cameras"], lobby], "events": {**before["events"], "enabled": True}}
        c.kubectl("patch", "camerafleet", FLEET, "--type=merge", "-p", json.dumps({"spec": change}))
        try:
            seen = wait_for("the lobby's tracks and its zone visit on the events topic", lobby_events, RECOVERY_TIMEOUT_S, 5)
        except AssertionError as err:
            raise AssertionError(f"{err}\n{_events_state(c, int(patched * 1000))}") from None
        first_s = time.time() - patched
        tracked = [r for r in asyncio.run(_results(c.kafka, topics["tracks"], "read_committed")) if r["cameraId"] == "lobby"]
        ids = {t["trackId"] for r in tracked for t in r["tracks"]}
        assert {e["trackId"] for e in seen if e["kind"] == "object"} <= ids, (ids, seen)
        with console(c) as get:
            timeline = wait_for(
                "the lobby's events in the console's timeline",
                lambda: (body := get("/api/timeline?camera=lobby")) and (t := json.loads(body))["events"] and t,
                300,
                5,
            )
        assert {e["cameraId"] for e in timeline["events"]} == {"lobby"} and "hall" in timeline["places"], timeline
    finally:
        c.kubectl("patch", "camerafleet", FLEET, "--type=merge", "-p", json.dumps({"spec": before}))
        server.stop()
    wait_for("the fleet Ready with events off again", lambda: c.condition(FLEET, "Ready").get("status") == "True", RECOVERY_TIMEOUT_S, 5)
    zones = sum(1 for e in seen if e["kind"] == "zone" and e["phase"] == "start")
    report(
        "events on Kubernetes",
        f"a live camera of faces and events.enabled patched in: its first track and zone visit committed {first_s:.0f} s after "
        f"the patch; {len(ids)} track ids on {len(tracked)} tracked frames, {zones} zone visits; listed by the console",
    )


@pytest.mark.parametrize(
    "name, change, fragment",
    [
        ("a-fleet-name-longer-than-kuberay-allows-x", {}, "metadata.name: 41 characters"),
        ("loopback-kafka", {"kafka": {"bootstrapServers": "127.0.0.1:9092"}}, "a loopback address"),
        ("local-bucket", {"bucket": {"uri": "file:///dev/shm/frames"}}, "a directory of one machine"),
        ("missing-account", {"kubernetes": {"serviceAccountName": "no-such-account"}}, "ServiceAccount 'no-such-account' does not exist"),
        (
            "gpu-without-gpus",
            {
                "models": [
                    {"name": "faces", "type": "face", "modelUri": "/opt/camerafleet/models/centerface.onnx", "resources": {"gpus": 1}}
                ]
            },
            "no replica could ever be placed",
        ),
    ],
)
def test_a_spec_the_cluster_cannot_run_ends_invalid_not_reconciling(
    installed: Cluster, fleet: dict[str, Any], name: str, change: dict[str, Any], fragment: str
) -> None:
    c = installed
    doc = readme_fleet(c)
    doc["metadata"]["name"] = name
    for key, value in change.items():
        doc["spec"][key] = {**doc["spec"][key], **value} if isinstance(value, dict) else value
    c.apply(doc)
    try:
        ready = wait_for(f"{name} InvalidSpec", lambda: (r := c.condition(name, "Ready")).get("reason") == "InvalidSpec" and r, 120)
        assert ready["status"] == "False" and fragment in ready["message"], ready
        assert c.get("camerafleet", name)["status"]["phase"] == "Failed"
        assert c.get("rayservice", f"{name}-serving") is None and c.get("rayjob", f"{name}-producer") is None
    finally:
        c.kubectl("delete", "camerafleet", name, "--wait=true", check=False)


def test_a_deleted_fleet_stops_its_jobs_cleanly(installed: Cluster, fleet: dict[str, Any]) -> None:
    """Graceful stop: KubeRay stops each Ray job (the runner drains its consumers); no job ends Failed."""
    c = installed
    seen: set[tuple[str, str, str]] = set()
    started = time.time()
    c.kubectl("delete", "camerafleet", FLEET, "--wait=false")
    deadline = time.monotonic() + RECOVERY_TIMEOUT_S
    while time.monotonic() < deadline:
        jobs = c.items("rayjobs", "-l", f"camerafleet.io/fleet={FLEET}")
        for job in jobs:
            st = job.get("status") or {}
            seen.add((job["metadata"]["name"], st.get("jobDeploymentStatus", ""), st.get("jobStatus", "")))
        if not jobs and c.get("rayservice", f"{FLEET}-serving") is None:
            break
        time.sleep(1)
    else:
        raise AssertionError(f"the fleet's objects were not deleted within {RECOVERY_TIMEOUT_S} s: {sorted(seen)}")
    report(
        "fleet deleted",
        f"RayJobs and RayService gone {time.time() - started:.0f} s later; job states seen: {sorted({s[1:] for s in seen})}",
    )
    assert not [s for s in seen if s[1] == "Failed" or s[2] == "FAILED"], f"a job failed on a clean stop: {sorted(seen)}"
    # Issue 23, defect 2: each job drained within its Pods' grace period (their preStop hook held them) and kept its
    # summary where it outlives them: the bucket.
    summaries = wait_for("both jobs' summaries in the bucket", lambda: (k := kept_summaries(c, fleet)) and len(k) >= 2 and k, 120)
    # The jobs' last runs (run ids carry their start time; earlier runs' summaries are there too, from the jobs the
    # tests above replaced): the producers' ledger too, counted once the consumers had committed (issue 23, defect 1).
    for role in ("producer", "consumer"):
        last = summaries[max(k for k in summaries if k.endswith(f"-{role}.json"))]
        assert last["results_from"] == f"kafka topic {RESULTS}" and last["processed"] > 0, (role, last)
        assert last["ledger_balanced"], f"{role}: frames unaccounted when the fleet was deleted: in flight {last['in_flight']}"
    report(
        "fleet deleted: summaries kept",
        ", ".join(f"{k}: processed {v['processed']}, in flight {v['in_flight']}" for k, v in sorted(summaries.items())),
    )


def bucket(c: Cluster, fleet: dict[str, Any], ns: str = NS) -> tuple[Any, str, str]:
    """(MinIO client, bucket name, the fleet's own folder of it: `<uri path>/<namespace>/<fleet>/`)."""
    from urllib.parse import urlparse

    from minio import Minio

    endpoint = urlparse(c.env["CAMERAFLEET_S3_ENDPOINT"])
    client = Minio(endpoint.netloc, c.env["AWS_ACCESS_KEY_ID"], c.env["AWS_SECRET_ACCESS_KEY"], secure=endpoint.scheme == "https")
    bucket_uri = urlparse(fleet["spec"]["bucket"]["uri"])
    return client, bucket_uri.netloc, f"{bucket_uri.path.strip('/')}/{ns}/{FLEET}/"


def kept_summaries(c: Cluster, fleet: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The fleet's job summaries in its bucket (`<namespace>/<fleet>/Summaries/<fleet>/<run id>-<role>.json` beside the frames)."""
    client, name, folder = bucket(c, fleet)
    prefix = f"{folder}Summaries/{FLEET}/"
    return {
        o.object_name.rsplit("/", 1)[-1]: orjson.loads(client.get_object(name, o.object_name).read())
        for o in client.list_objects(name, prefix=prefix)
    }
