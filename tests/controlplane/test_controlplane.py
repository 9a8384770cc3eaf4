"""The local Kubernetes control plane behaves like a real cluster where the operator depends on it.

The operator's tests trust this control plane to say no where a production cluster would: CRD schema
validation of KubeRay resources, RBAC for a ServiceAccount without bindings. They also rely on the
controller manager (owner references cascade, namespaces finish deleting) and on an API server restart
keeping both data and address. Each of those is checked here, against the pinned versions.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from camerafleet_dev.devservers.controlplane import (
    ADMIN_GROUP,
    ADMIN_USER,
    K8S_VERSION,
    KUBERAY_CRDS,
    ControlPlane,
    KubectlError,
)

pytestmark = pytest.mark.controlplane

RAY_IMAGE = "rayproject/ray:2.60.0"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# The controller manager acts within seconds on an idle machine (namespace deletion took 5 s); two minutes leave
# a machine whose cores are busy with other work room, and still fail a controller that never acts.
CONTROLLER_TIMEOUT_S = 120


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Poll ``condition`` until true; the seconds it took. Fails the test after ``timeout_s``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            pytest.fail(f"{what} did not happen within {timeout_s:.0f} s")
        time.sleep(0.5)
    return time.monotonic() - started


def exists(cluster: ControlPlane, *args: str) -> bool:
    result = cluster.kubectl("get", *args, "--ignore-not-found", "-o", "name", check=True)
    return bool(result.stdout.strip())


@pytest.fixture
def namespace(controlplane: ControlPlane) -> Iterator[str]:
    """A fresh namespace, deleted (without waiting) after the test."""
    name = unique("cp-test")
    controlplane.kubectl("create", "namespace", name, check=True)
    yield name
    controlplane.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=True)


def rayservice(name: str, namespace: str) -> dict[str, object]:
    serve_config = {"applications": [{"name": "fleet", "import_path": "camerafleet.serving.app:app", "route_prefix": "/"}]}
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "serveConfigV2": yaml.safe_dump(serve_config),
            "rayClusterConfig": {
                "headGroupSpec": {
                    "rayStartParams": {},
                    "template": {"spec": {"containers": [{"name": "ray-head", "image": RAY_IMAGE}]}},
                },
            },
        },
    }


def test_server_and_kubectl_report_the_pinned_version(controlplane: ControlPlane) -> None:
    versions = json.loads(controlplane.kubectl("version", "-o", "json", check=True).stdout)
    assert versions["serverVersion"]["gitVersion"] == K8S_VERSION
    assert versions["clientVersion"]["gitVersion"] == K8S_VERSION
    assert controlplane.server.startswith("https://127.0.0.1:")


def test_kubectl_ignores_the_callers_kubeconfig(controlplane: ControlPlane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "someone-elses-cluster"))
    whoami = json.loads(controlplane.kubectl("auth", "whoami", "-o", "json", check=True).stdout)
    assert whoami["status"]["userInfo"]["username"] == ADMIN_USER
    assert ADMIN_GROUP in whoami["status"]["userInfo"]["groups"]


def test_kuberay_crds_are_established(controlplane: ControlPlane) -> None:
    for file_name in KUBERAY_CRDS:
        crd = file_name.removeprefix("ray.io_").removesuffix(".yaml") + ".ray.io"
        conditions = json.loads(controlplane.kubectl("get", "crd", crd, "-o", "jsonpath={.status.conditions}", check=True).stdout)
        established = {c["type"]: c["status"] for c in conditions}.get("Established")
        assert established == "True", f"{crd}: {conditions}"


def test_server_side_dry_run_accepts_a_valid_rayservice(controlplane: ControlPlane, namespace: str) -> None:
    manifest = rayservice("fleet", namespace)
    result = controlplane.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(manifest), check=True)
    assert "rayservice.ray.io/fleet created (server dry run)" in result.stdout
    assert not exists(controlplane, "rayservice", "fleet", "-n", namespace), "dry run persisted it"


def test_server_side_dry_run_rejects_an_invalid_rayservice(controlplane: ControlPlane, namespace: str) -> None:
    manifest = rayservice("broken", namespace)
    manifest["spec"]["serveConfigV2"] = 42  # type: ignore[index]  # the schema says string
    with pytest.raises(KubectlError) as rejected:
        controlplane.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(manifest), check=True)
    message = rejected.value.stderr
    assert "spec.serveConfigV2" in message and "string" in message, message


def test_owner_references_cascade_through_the_garbage_collector(controlplane: ControlPlane, namespace: str) -> None:
    controlplane.kubectl("create", "configmap", "owner", "-n", namespace, check=True)
    owner_uid = controlplane.kubectl("get", "configmap", "owner", "-n", namespace, "-o", "jsonpath={.metadata.uid}", check=True).stdout
    dependent = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "dependent",
            "namespace": namespace,
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid}],
        },
        "data": {"key": "value"},
    }
    controlplane.kubectl("create", "-f", "-", input=json.dumps(dependent), check=True)
    controlplane.kubectl("delete", "configmap", "owner", "-n", namespace, check=True)
    wait_until(
        lambda: not exists(controlplane, "configmap", "dependent", "-n", namespace),
        CONTROLLER_TIMEOUT_S,
        "garbage collection of the dependent ConfigMap",
    )


def test_a_deleted_namespace_is_finalized(controlplane: ControlPlane) -> None:
    name = unique("cp-doomed")
    controlplane.kubectl("create", "namespace", name, check=True)
    controlplane.kubectl("create", "configmap", "content", "-n", name, check=True)
    wait_until(
        lambda: exists(controlplane, "serviceaccount", "default", "-n", name),
        CONTROLLER_TIMEOUT_S,
        "the default ServiceAccount of a new namespace",
    )
    controlplane.kubectl("delete", "namespace", name, "--wait=false", check=True)
    wait_until(lambda: not exists(controlplane, "namespace", name), CONTROLLER_TIMEOUT_S, "the namespace deletion to finish")


def test_a_service_account_gets_only_the_rights_rbac_grants(controlplane: ControlPlane, namespace: str, tmp_path: Path) -> None:
    kubeconfig = controlplane.service_account_kubeconfig(namespace, "operator", tmp_path / "operator.kubeconfig")
    assert kubeconfig.stat().st_mode & 0o077 == 0, "the token must not be readable by others"

    whoami = json.loads(controlplane.kubectl("auth", "whoami", "-o", "json", kubeconfig=kubeconfig, check=True).stdout)
    assert whoami["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:operator"
    via_env = json.loads(controlplane.kubectl("auth", "whoami", "-o", "json", check=True, env={"KUBECONFIG": str(kubeconfig)}).stdout)
    assert via_env["status"]["userInfo"] == whoami["status"]["userInfo"]

    denied = controlplane.kubectl("get", "pods", "-n", namespace, kubeconfig=kubeconfig, check=False)
    assert denied.returncode != 0
    assert "Forbidden" in denied.stderr, denied.stderr

    controlplane.kubectl("create", "role", "pod-reader", "-n", namespace, "--verb=list", "--resource=pods", check=True)
    controlplane.kubectl(
        "create",
        "rolebinding",
        "operator-pod-reader",
        "-n",
        namespace,
        "--role=pod-reader",
        f"--serviceaccount={namespace}:operator",
        check=True,
    )
    controlplane.kubectl("get", "pods", "-n", namespace, kubeconfig=kubeconfig, check=True)
    other = controlplane.kubectl("get", "pods", "-n", "default", kubeconfig=kubeconfig, check=False)
    assert "Forbidden" in other.stderr, "a Role must not grant anything outside its namespace"

    # A second call reuses the ServiceAccount (and its binding) with a fresh token.
    again = controlplane.service_account_kubeconfig(namespace, "operator", tmp_path / "again")
    controlplane.kubectl("get", "pods", "-n", namespace, kubeconfig=again, check=True)


def test_apiserver_restart_keeps_address_and_data(controlplane: ControlPlane, namespace: str) -> None:
    controlplane.kubectl("create", "configmap", "survivor", "-n", namespace, "--from-literal=key=value", check=True)
    server = controlplane.server
    old_pid = controlplane.apiserver.pid

    controlplane.restart_apiserver()

    assert controlplane.is_running()
    assert controlplane.server == server and controlplane.apiserver.pid != old_pid
    value = controlplane.kubectl("get", "configmap", "survivor", "-n", namespace, "-o", "jsonpath={.data.key}", check=True).stdout
    assert value == "value"
    # The controller manager has reconnected: it still gives a new namespace its ServiceAccount.
    fresh = unique("cp-after-restart")
    controlplane.kubectl("create", "namespace", fresh, check=True)
    try:
        wait_until(
            lambda: exists(controlplane, "serviceaccount", "default", "-n", fresh),
            CONTROLLER_TIMEOUT_S,
            "the controller manager to serve a namespace created after the restart",
        )
    finally:
        controlplane.kubectl("delete", "namespace", fresh, "--wait=false", check=True)


def test_cli_runs_a_detached_control_plane(controlplane: ControlPlane, tmp_path: Path) -> None:
    """What ``make controlplane-up`` / ``controlplane-down`` do (the fixture ensures the build)."""
    cli = [sys.executable, "-m", "camerafleet_dev.devservers", "controlplane"]
    files = ["--pid-file", str(tmp_path / "cp.pid"), "--env-file", str(tmp_path / "cp.env")]
    started = subprocess.run([*cli, "--data-dir", str(tmp_path / "data"), *files], capture_output=True, text=True, timeout=300, check=False)
    try:
        assert started.returncode == 0, started.stderr
        kubeconfig = tmp_path / "data" / "kubeconfig"
        assert started.stdout.strip() == f"KUBECONFIG={kubeconfig}"
        assert (tmp_path / "cp.env").read_text() == f"KUBECONFIG={kubeconfig}\n"
        assert subprocess.run([*cli, "--status", *files], check=False).returncode == 0
        namespaces = controlplane.kubectl("get", "namespaces", "-o", "name", check=True, kubeconfig=kubeconfig).stdout
        assert "namespace/default" in namespaces
        again = subprocess.run(
            [*cli, "--data-dir", str(tmp_path / "data"), *files], capture_output=True, text=True, timeout=60, check=False
        )
        assert (again.returncode, again.stdout) == (0, started.stdout), "start must be idempotent"
    finally:
        stopped = subprocess.run([*cli, "--stop", *files], capture_output=True, text=True, timeout=120, check=False)
    assert stopped.returncode == 0, stopped.stderr
    assert not (tmp_path / "cp.pid").exists() and not (tmp_path / "cp.env").exists()
    assert subprocess.run([*cli, "--status", *files], check=False).returncode == 3
