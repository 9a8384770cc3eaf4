"""A real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager) as local processes.

The CameraFleet operator turns fleet resources into KubeRay RayServices, ConfigMaps and RBAC objects,
and what matters is how a real API server treats them: CRD schema validation, server-side apply,
RBAC, owner-reference garbage collection, namespace deletion. A fake client or a mocked API would
agree with whatever the operator does, so its tests and ``make controlplane-up`` use the real
components instead. There is no Docker engine (so no kind), hence:

* **Build once, pinned, cached.** kube-apiserver, kube-controller-manager and kubectl are built from
  ``k8s.io/kubernetes`` through the Go module proxy, with a throwaway wrapper module that replaces
  every staging module (``k8s.io/api``, ``k8s.io/client-go``, ...) by its published ``v0.34.x``
  version -- ``go install`` refuses modules with ``replace`` directives. etcd is built the same way
  from ``go.etcd.io/etcd/server/v3``. Both land in the tool cache (``cache.py``), a directory named
  after both versions, so a version bump never reuses stale binaries. The KubeRay CRDs are copied from
  the ``ray-operator`` module zip; the operator itself is not built.
* **Run with real security.** A fresh CA per data directory signs the API server's serving certificate
  and an admin client certificate (``O=system:masters``); RBAC is on, so a ServiceAccount kubeconfig
  (``service_account_kubeconfig``) gets exactly the permissions its bindings grant and nothing more.
* **Only what the operator needs.** No scheduler, no kubelet: Pods are stored but never run. The
  controller manager runs the garbage collector, namespace, ServiceAccount and ClusterRole
  aggregation controllers, without which owner references would not cascade and deleted namespaces
  would hang in ``Terminating``.

Each component is a ``LocalServer`` (see ``_process.py``), so it is stopped with its process group,
its output is kept in a log file in the data directory, and a failed start reports that log's tail.
Ports are chosen once per ``ControlPlane``, so ``restart_apiserver()`` (fault-injection tests) brings
the API server back on the same address over the same etcd data.

One job per module: the build and the tool cache in ``controlplane_build.py``, the certificates and
kubeconfigs in ``controlplane_pki.py``, the three processes in ``controlplane_servers.py``, and here the
control plane that starts them in order and is used through kubectl. Every name those modules define that
callers used from here stays importable from here (``__all__``).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar, Self, TextIO

import yaml

from ._process import DEFAULT_STOP_TIMEOUT_S, LocalServer, ManagedProcesses, ServerStartError, free_port, tail

# The other parts of the control plane; what they define stays importable from here (see __all__).
from .controlplane_build import (
    _K8S_COMMANDS,
    ETCD_MODULE,
    ETCD_VERSION,
    K8S_MODULE,
    K8S_STAGING_VERSION,
    K8S_VERSION,
    KUBERAY_CRDS,
    KUBERAY_MODULE,
    KUBERAY_VERSION,
    binary,
    controlplane_home,
    fetch_controlplane,
    is_fetched,
    kuberay_crd_paths,
    kuberay_home,
)
from .controlplane_pki import ADMIN_GROUP, ADMIN_USER, SERVICE_CLUSTER_IP_RANGE, NodeNetwork, _b64_file, _Pki, _write_kubeconfig
from .controlplane_servers import CONTROLLERS, SERVICE_ACCOUNT_ISSUER, EtcdServer, KubeAPIServer, KubeControllerManager, _api_get


class KubectlError(subprocess.CalledProcessError):
    """``kubectl`` exited with a non-zero status; ``str()`` includes its error output."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n{(self.stderr or '').strip()}"


class ControlPlane(ManagedProcesses):
    """etcd + kube-apiserver + kube-controller-manager on free loopback ports, with KubeRay CRDs.

    >>> with ControlPlane() as cluster:                                   # doctest: +SKIP
    ...     cluster.kubectl("get", "namespaces")
    ...     operator_kubeconfig = cluster.service_account_kubeconfig("fleet", "operator", path)

    ``kubeconfig`` (admin, ``system:masters``), ``server`` and ``ca_path`` are fixed from construction
    on and stay valid across ``stop()``/``start()`` and ``restart_apiserver()``. ``data_dir`` holds
    the certificates (``pki/``), the etcd data and one log per component (``<component>.out``).
    Unless ``detached``, the processes are stopped when the interpreter exits. A temporary data
    directory (``data_dir=None``) is deleted by ``close()`` / leaving the ``with`` block.
    """

    #: The ``kind`` of each component, in start order (they are also the executables' names).
    COMPONENT_KINDS: ClassVar[tuple[str, ...]] = ("etcd", "kube-apiserver", "kube-controller-manager")

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        startup_timeout_s: float = 120.0,
        install_kuberay_crds: bool = True,
        detached: bool = False,
        out: TextIO | None = None,
        network: NodeNetwork | None = None,
    ) -> None:
        self._owns_data_dir = data_dir is None
        if data_dir is None:
            data_dir = tempfile.mkdtemp(prefix="camerafleet-controlplane-")
        self.data_dir: Path = Path(data_dir).absolute()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.startup_timeout_s = startup_timeout_s
        self.install_kuberay_crds = install_kuberay_crds
        self._out = out
        #: Seconds the last ``start()`` took, from spawning etcd to the CRDs being Established.
        self.startup_seconds: float | None = None
        self.network = network
        self._pki = _Pki(self.data_dir / "pki", network)
        ports: list[int] = []
        for _ in range(4):
            ports.append(free_port(exclude=ports))
        etcd_client, etcd_peer, apiserver_port, kcm_port = ports
        self.etcd = EtcdServer(
            self.data_dir, client_port=etcd_client, peer_port=etcd_peer, startup_timeout_s=startup_timeout_s, detached=detached, out=out
        )
        self.apiserver = KubeAPIServer(
            self.data_dir,
            port=apiserver_port,
            etcd_url=self.etcd.url,
            pki=self._pki,
            startup_timeout_s=startup_timeout_s,
            detached=detached,
            out=out,
        )
        self.controller_manager = KubeControllerManager(
            self.data_dir,
            port=kcm_port,
            kubeconfig=self.kubeconfig,
            pki=self._pki,
            startup_timeout_s=startup_timeout_s,
            detached=detached,
            out=out,
        )

    def __repr__(self) -> str:
        return f"ControlPlane(server={self.server!r}, data_dir={str(self.data_dir)!r}, running={self.is_running()})"

    @property
    def server(self) -> str:
        """The API server URL: ``https://127.0.0.1:<port>``."""
        return self.apiserver.url

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (client certificate in ``system:masters``: RBAC does not apply)."""
        return self.data_dir / "kubeconfig"

    @property
    def ca_path(self) -> Path:
        """The CA certificate that signed the API server's serving certificate."""
        return self._pki.ca_cert

    @property
    def kubectl_path(self) -> Path:
        """The pinned kubectl binary (same version as the API server)."""
        return binary("kubectl")

    @property
    def components(self) -> tuple[LocalServer, ...]:
        """The processes in start order: etcd, kube-apiserver, kube-controller-manager."""
        return (self.etcd, self.apiserver, self.controller_manager)

    @property
    def pids(self) -> dict[str, int]:
        """The process id (and process group id) of each running component, by kind."""
        return {c.kind: c.pid for c in self.components if c.pid is not None}

    def is_running(self) -> bool:
        """Whether all three processes are alive."""
        return all(component.is_running() for component in self.components)

    def start(self) -> Self:
        """Start all components and return once the cluster serves requests.

        Ready means: ``/readyz`` is ok, the ``default`` namespace and its ``default`` ServiceAccount
        exist (so the controller manager works) and, unless disabled, the KubeRay CRDs are
        Established. Raises ``ServerStartError`` with the relevant log's tail otherwise; whatever was
        started is stopped again.
        """
        if any(component.is_running() for component in self.components):
            raise RuntimeError(f"the control plane in {self.data_dir} is already (partly) running")
        fetch_controlplane(out=self._out)
        for name in ("etcd", *_K8S_COMMANDS):
            if not os.access(binary(name), os.X_OK):
                raise ServerStartError(
                    f"the control-plane tool cache {controlplane_home()} is damaged ({name} is "
                    f"missing or not executable): delete that directory and run "
                    f"'python -m camerafleet_dev.devservers fetch controlplane'"
                )
        started = time.monotonic()
        self._pki.ensure()
        _write_kubeconfig(
            self.kubeconfig,
            server=self.server,
            ca_cert=self._pki.ca_cert,
            user=ADMIN_USER,
            credentials={"client-certificate-data": _b64_file(self._pki.admin_cert), "client-key-data": _b64_file(self._pki.admin_key)},
        )
        try:
            for component in self.components:
                component.start()
            self._wait_for_api_objects(started)
            if self.install_kuberay_crds:
                self.apply_crd(*kuberay_crd_paths())
        except BaseException:
            self.stop(timeout_s=5.0)
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def _wait_for_api_objects(self, started: float) -> None:
        """Wait for the ``default`` namespace (API server) and ServiceAccount (controller manager)."""
        deadline = started + self.startup_timeout_s
        checks = [
            ("/api/v1/namespaces/default", self.apiserver),
            ("/api/v1/namespaces/default/serviceaccounts/default", self.controller_manager),
        ]
        for path, responsible in checks:
            while True:
                status, body = _api_get(self._pki, self.apiserver.port, path)
                if status == 200:
                    break
                if not responsible.is_running() or time.monotonic() > deadline:
                    raise ServerStartError(
                        f"GET {path} still answers {status or body} after "
                        f"{time.monotonic() - started:.0f} s: {responsible.kind} is not doing its "
                        f"job.\n--- last lines of {responsible.log_path} ---\n"
                        f"{tail(responsible.log_path)}"
                    )
                time.sleep(0.2)

    def stop(self, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> None:
        """Stop the controller manager, the API server and etcd (in that order); data is kept."""
        for component in reversed(self.components):
            component.stop(timeout_s)

    def restart_apiserver(self, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> Self:
        """Stop kube-apiserver (SIGTERM, then SIGKILL after ``timeout_s``) and start it again.

        etcd and the controller manager keep running; the server comes back on the same port with
        the same data and certificates. Returns once ``/readyz`` is ok again.
        """
        self.apiserver.restart(timeout_s)
        return self

    # -- using the cluster -----------------------------------------------------------------------

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = False,
        kubeconfig: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        timeout_s: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run the pinned kubectl against this cluster; its output is captured as text.

        It acts as admin unless ``kubeconfig`` is given or ``env`` (variables added to this process's
        environment) sets ``KUBECONFIG``; a ``KUBECONFIG`` of the caller's own environment is ignored,
        so a developer's real cluster is never the target. Like ``subprocess.run``, a non-zero exit
        is returned, unless ``check`` is set: then it raises ``KubectlError`` with kubectl's error
        output. kubectl's discovery cache goes to the data directory and ``~/.kube/kuberc``
        preferences are ignored, so results do not depend on the developer's home directory.
        """
        full_env = {key: value for key, value in os.environ.items() if key != "KUBECONFIG"}
        full_env.update(env or {})
        full_env.update(KUBECACHEDIR=str(self.data_dir / "kube-cache"), KUBERC="off")
        if kubeconfig is None and "KUBECONFIG" not in full_env:
            kubeconfig = self.kubeconfig
        flags = [f"--kubeconfig={kubeconfig}"] if kubeconfig is not None else []
        result = subprocess.run(
            [str(self.kubectl_path), *flags, *args],
            input=input,
            capture_output=True,
            text=True,
            env=full_env,
            timeout=timeout_s,
            check=False,
        )
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, ["kubectl", *args], result.stdout, result.stderr)
        return result

    def apply_crd(self, *paths: str | os.PathLike[str], timeout_s: float = 60.0) -> list[str]:
        """Install or update CRDs with server-side apply and wait until they are Established.

        Server-side apply because the KubeRay CRDs are too large for the client-side
        ``last-applied-configuration`` annotation. Returns the names of the CRDs.
        """
        names = []
        for path in paths:
            for document in yaml.safe_load_all(Path(path).read_text()):
                if isinstance(document, dict) and document.get("kind") == "CustomResourceDefinition":
                    names.append(str(document["metadata"]["name"]))
        if not names:
            raise ValueError(f"no CustomResourceDefinition in {', '.join(map(str, paths))}")
        files = [arg for path in paths for arg in ("-f", str(path))]
        self.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=camerafleet-devservers", *files, check=True)
        # Polled rather than `kubectl wait` or a jsonpath filter: right after the apply a CRD has no
        # conditions yet, and both then fail at once ("<nil> is not array or slice") instead of waiting.
        deadline = time.monotonic() + timeout_s
        while True:
            listed = json.loads(self.kubectl("get", "customresourcedefinitions", "-o", "json", check=True).stdout)
            established = {
                crd["metadata"]["name"]
                for crd in listed["items"]
                if any(
                    c.get("type") == "Established" and c.get("status") == "True" for c in (crd.get("status") or {}).get("conditions") or []
                )
            }
            waiting = [name for name in names if name not in established]
            if not waiting:
                return names
            if time.monotonic() > deadline:
                raise ServerStartError(f"CRDs not Established after {timeout_s:.0f} s: {', '.join(waiting)}")
            time.sleep(0.25)

    def service_account_kubeconfig(self, namespace: str, name: str, path: str | os.PathLike[str], *, token_ttl_s: int = 3600) -> Path:
        """Write a kubeconfig that acts as ServiceAccount ``namespace/name``; return its path.

        The ServiceAccount is created if missing (the namespace must exist). The credential is a
        bound token from the TokenRequest API valid for ``token_ttl_s`` (at least 600 s), so whoever
        uses the kubeconfig has exactly the RBAC permissions bound to that ServiceAccount -- how
        the operator is tested without cluster-admin.
        """
        if token_ttl_s < 600:
            raise ValueError("the TokenRequest API issues tokens valid for at least 600 s")
        found = self.kubectl("get", "serviceaccount", name, "-n", namespace, "--ignore-not-found", "-o", "name", check=True)
        if not found.stdout.strip():
            self.kubectl("create", "serviceaccount", name, "-n", namespace, check=True)
        token = self.kubectl("create", "token", name, "-n", namespace, f"--duration={token_ttl_s}s", check=True).stdout.strip()
        return _write_kubeconfig(
            Path(path).absolute(),
            server=self.server,
            ca_cert=self._pki.ca_cert,
            user=f"system:serviceaccount:{namespace}:{name}",
            credentials={"token": token},
            namespace=namespace,
        )


__all__ = [
    "ADMIN_GROUP",
    "ADMIN_USER",
    "CONTROLLERS",
    "ETCD_MODULE",
    "ETCD_VERSION",
    "K8S_MODULE",
    "K8S_STAGING_VERSION",
    "K8S_VERSION",
    "KUBERAY_CRDS",
    "KUBERAY_MODULE",
    "KUBERAY_VERSION",
    "SERVICE_ACCOUNT_ISSUER",
    "SERVICE_CLUSTER_IP_RANGE",
    "ControlPlane",
    "EtcdServer",
    "KubeAPIServer",
    "KubeControllerManager",
    "KubectlError",
    "NodeNetwork",
    "binary",
    "controlplane_home",
    "fetch_controlplane",
    "is_fetched",
    "kuberay_crd_paths",
    "kuberay_home",
]
