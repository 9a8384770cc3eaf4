"""The control plane's processes (the third job of ``controlplane.py``): etcd, kube-apiserver and
kube-controller-manager, each a ``LocalServer`` (``_process.py``), so it is stopped with its process group,
its output is kept in a log file in the data directory, and a failed start reports that log's tail.
Without a ``NodeNetwork`` they serve the operator's tests (loopback, no Pods run); with one they serve the
cluster of ``make cluster-up`` (the API server on the node's address, every controller on).
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from ._process import LocalServer, port_accepts
from .controlplane_build import binary
from .controlplane_pki import ADMIN_GROUP, SERVICE_CLUSTER_IP_RANGE, NodeNetwork, _Pki

SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc"
#: Controllers of kube-controller-manager that are run: owner-reference garbage collection, namespace
#: deletion, the ``default`` ServiceAccount of each namespace and its token Secrets, aggregated
#: ClusterRoles (``admin``/``edit``/``view``), and the ``kube-root-ca.crt`` ConfigMap of each namespace.
CONTROLLERS = (
    "garbagecollector",
    "namespace",
    "serviceaccount",
    "serviceaccount-token",
    "clusterrole-aggregation",
    "root-ca-cert-publisher",
)

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class EtcdServer(LocalServer):
    """A single-member etcd on two loopback ports (plain HTTP: only local processes reach it).

    ``--unsafe-no-fsync`` trades durability against a machine crash (irrelevant for throw-away test
    data) for an API server that does not stall on disk flushes.
    """

    kind = "etcd"

    def __init__(
        self, data_dir: Path, *, client_port: int, peer_port: int, startup_timeout_s: float, detached: bool, out: TextIO | None
    ) -> None:
        super().__init__(data_dir, startup_timeout_s=startup_timeout_s, detached=detached, out=out)
        self.client_port = client_port
        self.peer_port = peer_port

    @property
    def url(self) -> str:
        """The client URL kube-apiserver connects to."""
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def log_path(self) -> Path:
        return self.stdout_path

    def _prepare(self) -> None:
        (self.data_dir / "etcd").mkdir(mode=0o700, exist_ok=True)

    def _command(self) -> tuple[list[str], Mapping[str, str]]:
        peer = f"http://127.0.0.1:{self.peer_port}"
        return [
            str(binary("etcd")),
            "--name=camerafleet",
            f"--data-dir={self.data_dir / 'etcd'}",
            f"--listen-client-urls={self.url}",
            f"--advertise-client-urls={self.url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=camerafleet={peer}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ], dict(os.environ)

    def _ready(self) -> bool:
        if not port_accepts(self.client_port):
            return False
        try:
            with _NO_PROXY.open(f"{self.url}/health", timeout=5) as response:
                return bool(json.load(response).get("health") == "true")
        except (urllib.error.URLError, OSError, ValueError):
            return False


class KubeAPIServer(LocalServer):
    """kube-apiserver on a loopback port, with etcd storage, client-certificate admin and RBAC."""

    kind = "kube-apiserver"

    def __init__(
        self, data_dir: Path, *, port: int, etcd_url: str, pki: _Pki, startup_timeout_s: float, detached: bool, out: TextIO | None
    ) -> None:
        super().__init__(data_dir, startup_timeout_s=startup_timeout_s, detached=detached, out=out)
        self.port = port
        self.etcd_url = etcd_url
        self._pki = pki

    @property
    def host(self) -> str:
        return self._pki.network.node_ip if self._pki.network else "127.0.0.1"

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.stdout_path

    def _prepare(self) -> None:
        (self.data_dir / "apiserver-certs").mkdir(mode=0o700, exist_ok=True)

    def _command(self) -> tuple[list[str], Mapping[str, str]]:
        pki = self._pki
        if pki.network is not None:
            return self._cluster_command(pki.network), dict(os.environ)
        return [
            str(binary("kube-apiserver")),
            f"--etcd-servers={self.etcd_url}",
            f"--cert-dir={self.data_dir / 'apiserver-certs'}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            f"--secure-port={self.port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            # The built-in "kubernetes" Service would get the loopback address as its endpoint,
            # which Endpoints validation rejects (an error every few seconds); nothing here uses it.
            "--endpoint-reconciler-type=none",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--allow-privileged=true",
            "--authorization-mode=RBAC",
            # No token volumes are injected into Pods: nothing runs them, and the tests create Pods
            # under ServiceAccounts that may not exist yet.
            "--disable-admission-plugins=ServiceAccount",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            # Without a grace period, open watches (the controller manager's) keep a SIGTERMed
            # server alive until its 60 s shutdown timeout; with one, they are ended and it exits
            # in about a second, so restart_apiserver() is quick.
            "--shutdown-watch-termination-grace-period=2s",
            "--profiling=false",
        ], dict(os.environ)

    def _cluster_command(self, network: NodeNetwork) -> list[str]:
        """Pods run: the server listens on the node's address (the ``kubernetes`` Service's endpoint),
        ServiceAccount tokens are mounted into Pods, and it reaches kubelets with a client certificate."""
        pki = self._pki
        kubelet_cert, kubelet_key = pki.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", [ADMIN_GROUP])
        return [
            str(binary("kube-apiserver")),
            f"--etcd-servers={self.etcd_url}",
            f"--cert-dir={self.data_dir / 'apiserver-certs'}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            f"--secure-port={self.port}",
            f"--bind-address={network.node_ip}",
            f"--advertise-address={network.node_ip}",
            f"--service-cluster-ip-range={network.service_cidr}",
            "--allow-privileged=true",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            f"--kubelet-client-certificate={kubelet_cert}",
            f"--kubelet-client-key={kubelet_key}",
            f"--kubelet-certificate-authority={pki.ca_cert}",
            "--kubelet-preferred-address-types=InternalIP",
            "--shutdown-watch-termination-grace-period=2s",
            "--profiling=false",
        ]

    def _ready(self) -> bool:
        if not port_accepts(self.port, host=self.host):
            return False
        status, body = _api_get(self._pki, self.port, "/readyz")
        return status == 200 and body.strip() == "ok"


class KubeControllerManager(LocalServer):
    """kube-controller-manager with the controllers in ``CONTROLLERS``, talking to the API as admin."""

    kind = "kube-controller-manager"

    def __init__(
        self, data_dir: Path, *, port: int, kubeconfig: Path, pki: _Pki, startup_timeout_s: float, detached: bool, out: TextIO | None
    ) -> None:
        super().__init__(data_dir, startup_timeout_s=startup_timeout_s, detached=detached, out=out)
        self.port = port
        self.kubeconfig = kubeconfig
        self._pki = pki

    @property
    def log_path(self) -> Path:
        return self.stdout_path

    def _prepare(self) -> None:
        (self.data_dir / "controller-manager-certs").mkdir(mode=0o700, exist_ok=True)

    def _command(self) -> tuple[list[str], Mapping[str, str]]:
        pki = self._pki
        # With Pods running, every default controller (Deployments, Jobs, EndpointSlices, node lifecycle, ...).
        cluster = (
            [f"--service-cluster-ip-range={pki.network.service_cidr}", f"--cluster-cidr={pki.network.pod_cidr}"] if pki.network else []
        )
        return [
            str(binary("kube-controller-manager")),
            f"--kubeconfig={self.kubeconfig}",
            f"--controllers={'*' if pki.network else ','.join(CONTROLLERS)}",
            *cluster,
            f"--service-account-private-key-file={pki.sa_key}",
            f"--root-ca-file={pki.ca_cert}",
            "--use-service-account-credentials=false",
            "--leader-elect=false",
            f"--secure-port={self.port}",
            "--bind-address=127.0.0.1",
            f"--cert-dir={self.data_dir / 'controller-manager-certs'}",  # its self-signed serving cert
            "--profiling=false",
        ], dict(os.environ)

    def _ready(self) -> bool:
        if not port_accepts(self.port):
            return False
        # /healthz is open to anonymous callers; the serving certificate is self-signed.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return _https_get(context, self.port, "/healthz")[0] == 200


def _https_get(context: ssl.SSLContext, port: int, path: str, host: str = "127.0.0.1") -> tuple[int, str]:
    """GET https://``host``:``port``/``path``; (0, reason) when it cannot connect."""
    connection = http.client.HTTPSConnection(host, port, context=context, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    except (OSError, http.client.HTTPException) as exc:
        return 0, str(exc)
    finally:
        connection.close()


def _api_get(pki: _Pki, port: int, path: str) -> tuple[int, str]:
    """GET ``path`` from the API server as the admin, verifying its certificate against our CA."""
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    context.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
    return _https_get(context, port, path, pki.network.node_ip if pki.network else "127.0.0.1")
