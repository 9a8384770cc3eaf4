"""The cluster of `make cluster-up` (its settings in <CAMERAFLEET_CLUSTER_DIR>/env) and CameraFleet installed
on it the way the README tells a user to: both Helm charts, then the example fleet adjusted as the README
says. The tests never start the cluster themselves: without it they fail, naming the command."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from camerafleet_dev.cluster.plan import NODE_RANGE
from camerafleet_dev.devservers.helm import binary as helm_binary

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_DIR = Path(os.environ.get("CAMERAFLEET_CLUSTER_DIR", ROOT / "out" / "cluster")).absolute()
OPERATOR_NS = "camerafleet-system"
NS = "default"


def wait_for(what: str, check: Callable[[], Any], timeout_s: float, interval_s: float = 2.0) -> Any:
    """Poll `check` until it returns something truthy; the timeouts below are generous on purpose (a busy
    2-core machine starts Ray pods slowly): a test waits for a state, it never asserts a speed."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}; last: {last!r}")


@dataclass
class Cluster:
    env: dict[str, str]

    @property
    def kafka(self) -> str:
        return self.env["KAFKA_BOOTSTRAP"]

    def run(self, *argv: str, check: bool = True, stdin: str | None = None, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            list(argv), input=stdin, capture_output=True, text=True, env={**os.environ, **self.env}, timeout=timeout_s, check=False
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
        return proc

    def kubectl(self, *args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.run(self.env["KUBECTL"], *args, check=check, stdin=stdin)

    def helm(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(str(helm_binary()), *args, timeout_s=600)

    def get(self, kind: str, name: str, ns: str = NS) -> dict[str, Any] | None:
        proc = self.kubectl("get", kind, name, "-n", ns, "-o", "json", check=False)
        return json.loads(proc.stdout) if proc.returncode == 0 else None

    def items(self, kind: str, *selector: str, ns: str = NS) -> list[dict[str, Any]]:
        return list(json.loads(self.kubectl("get", kind, "-n", ns, *selector, "-o", "json").stdout)["items"])

    def condition(self, fleet: str, type_: str) -> dict[str, Any]:
        obj = self.get("camerafleet", fleet) or {}
        return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == type_), {})

    def condition_of_node(self, node: str, type_: str) -> dict[str, Any]:
        obj = self.get("node", node) or {}
        return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == type_), {})

    def apply(self, obj: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(obj))


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    env_file = CLUSTER_DIR / "env"
    if not env_file.is_file():
        pytest.fail(f"no cluster: {env_file} is missing; start one with `make cluster-up` (then `make test-e2e`)", pytrace=False)
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
    c = Cluster(env)
    proc = c.kubectl("get", "node", "camerafleet-node", "-o", "json", check=False)
    if proc.returncode != 0:
        pytest.fail(
            f"the cluster of {CLUSTER_DIR} does not answer ({proc.stderr.strip()[:300]}); `make cluster-down cluster-up`", pytrace=False
        )
    return c


# The layout under test (E2E_LAYOUT): `production` (the default) is examples/cluster-fleet.yaml as shipped with the
# CPU-only overlay (heads do no work, the models on the GPU pool, the jobs' actors on worker Pods); `small-node`
# is examples/small-node-fleet.yaml (every actor on the heads). Both with this cluster's Kafka and S3, which run
# as host processes rather than the stack chart's Pods: the README's `sed` puts their addresses in place of the
# stack's Service names, or (`short_names`) Services of those names front them in the fleet's namespace.
LAYOUT = os.environ.get("E2E_LAYOUT", "production")
EXAMPLES = {
    "small-node": "cat examples/small-node-fleet.yaml",
    "production": '"$KUBECTL" patch --local -f examples/cluster-fleet.yaml --type merge --patch-file examples/overlays/cpu-only.yaml -o yaml',
}
ADDRESSES = 'sed -e "s#camerafleet-kafka:9092#$KAFKA_BOOTSTRAP#" -e "s#http://camerafleet-minio:9000#$CAMERAFLEET_S3_ENDPOINT#"'
STACK_SERVICES = {"camerafleet-kafka": 9092, "camerafleet-minio": 9000}  # the stack chart's, as the examples name them


def readme_fleet(c: Cluster, *, short_names: bool = False) -> dict[str, Any]:
    """The README's command for the layout under test, run verbatim; the manifest it would pipe into
    `kubectl apply -f -`. `short_names`: the example's own Kafka and MinIO names, left as the stack's Services."""
    if LAYOUT not in EXAMPLES:
        pytest.fail(f"E2E_LAYOUT={LAYOUT!r}: use one of {', '.join(EXAMPLES)}", pytrace=False)
    command = EXAMPLES[LAYOUT] if short_names else f"{EXAMPLES[LAYOUT]} | {ADDRESSES}"
    proc = subprocess.run(["bash", "-c", command], cwd=ROOT, env={**os.environ, **c.env}, capture_output=True, text=True, check=True)
    doc: dict[str, Any] = yaml.safe_load(proc.stdout)
    return doc


def front_the_nodes_kafka_and_minio(c: Cluster, ns: str) -> None:
    """The stack chart's Service names in `ns` (`camerafleet-kafka:9092`, `camerafleet-minio:9000`), each a Service
    without a selector whose EndpointSlice is the node's broker or MinIO: real DNS and kube-proxy, as the stack's
    Services in front of its Pods, where only the server behind them runs as a node's process."""
    servers = {"camerafleet-kafka": c.env["KAFKA_BOOTSTRAP"], "camerafleet-minio": urlparse(c.env["CAMERAFLEET_S3_ENDPOINT"]).netloc}
    for name, port in STACK_SERVICES.items():
        host, target = servers[name].rsplit(":", 1)
        c.apply(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"ports": [{"name": "tcp", "port": port, "targetPort": int(target)}]},
            }
        )
        c.apply(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "addressType": "IPv4",
                "metadata": {"name": name, "namespace": ns, "labels": {"kubernetes.io/service-name": name}},
                "endpoints": [{"addresses": [host]}],
                "ports": [{"name": "tcp", "port": int(target), "protocol": "TCP"}],
            }
        )


# Prometheus runs on the host here, as a node's process would: it scrapes the fleets' Pods from the nodes' addresses.
OPERATOR_VALUES = ("--set-json", f'fleetNetworkPolicy.metricsFrom=[{{"ipBlock": {{"cidr": "{NODE_RANGE}"}}}}]')


@pytest.fixture(scope="session")
def installed(cluster: Cluster) -> Iterator[Cluster]:
    """The README's two helm commands (Kafka and S3 are the node's, through the stack chart's bring-your-own
    settings), verbatim but for those values; uninstalled at the end so the cluster can run the tests again."""
    c = cluster
    # A run killed before its teardown leaves its fleet and releases, kept across `make cluster-down cluster-up` with
    # the cluster's data in out/cluster; `helm install` would then refuse the names. Removed first, as at the end.
    _uninstall(c)
    # On a fresh cluster `helm install` creates the CRD, as for a user (helm then owns its fields, which the chart
    # upgrade test's README step must take over). A cluster of an earlier run keeps its CRD (uninstalling leaves it,
    # as Helm does), which helm would not update: the README's upgrade step first, there.
    if c.kubectl("get", "crd", "camerafleets.camerafleet.io", check=False).returncode == 0:
        c.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "charts" / "camerafleet-operator" / "crds"))
    c.helm(
        "install", "camerafleet-operator", str(ROOT / "charts" / "camerafleet-operator"), "-n", OPERATOR_NS, "--create-namespace",
        *OPERATOR_VALUES,
    )  # fmt: skip
    c.helm(
        "install",
        "camerafleet-stack",
        str(ROOT / "charts" / "camerafleet-stack"),
        "--set", f"kafka.external.bootstrapServers={c.kafka}",
        "--set", f"s3.external.endpoint={c.env['CAMERAFLEET_S3_ENDPOINT']}",
        "--set", f"s3.external.accessKeyId={c.env['AWS_ACCESS_KEY_ID']}",
        "--set", f"s3.external.secretAccessKey={c.env['AWS_SECRET_ACCESS_KEY']}",
    )  # fmt: skip
    try:
        wait_for("the operator Pod ready", lambda: _deployment_available(c, OPERATOR_NS, "camerafleet-operator"), 300)
        yield c
    finally:
        _uninstall(c)


def _uninstall(c: Cluster) -> None:
    """The fleets first, while the operator is there to run their finalizers, then both releases."""
    c.kubectl("delete", "camerafleets", "--all", "-n", NS, "--wait=true", "--timeout=300s", check=False)
    c.helm("uninstall", "camerafleet-stack", "--ignore-not-found")
    c.helm("uninstall", "camerafleet-operator", "-n", OPERATOR_NS, "--ignore-not-found")


def _deployment_available(c: Cluster, ns: str, name: str) -> bool:
    obj = c.get("deployment", name, ns) or {}
    return int((obj.get("status") or {}).get("availableReplicas") or 0) >= 1
