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
"""

from __future__ import annotations

import base64
import datetime
import http.client
import ipaddress
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Self, TextIO

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ._process import (
    DEFAULT_STOP_TIMEOUT_S,
    LocalServer,
    ManagedProcesses,
    ServerStartError,
    free_port,
    port_accepts,
    require_executable,
    run_with_heartbeat,
    tail,
)
from .cache import ToolFetchError, ensure_tool, is_complete, tool_dir

#: The newest v1.34 patch release that the Go module proxy serves with verified checksums here
#: (v1.34.11 and v1.34.12 are listed, but sum.golang.org does not know them).
K8S_VERSION = "v1.34.10"
#: The staging modules (k8s.io/api, client-go, ...) are published as v0.<minor>.<patch>.
K8S_STAGING_VERSION = "v0" + K8S_VERSION[2:]
#: Any etcd 3.6 serves kube-apiserver 1.34 (whose own client is 3.6.4); this is the newest 3.6 patch.
ETCD_VERSION = "v3.6.16"
#: KubeRay whose CRDs (RayCluster, RayJob, RayService) are installed. v1.7.0 is not obtainable
#: through the Go module proxy here (403 "This module version is not available").
KUBERAY_VERSION = "v1.6.0"
KUBERAY_CRDS = ("ray.io_rayclusters.yaml", "ray.io_rayjobs.yaml", "ray.io_rayservices.yaml")

K8S_MODULE = "k8s.io/kubernetes"
ETCD_MODULE = "go.etcd.io/etcd/server/v3"
KUBERAY_MODULE = "github.com/ray-project/kuberay/ray-operator"

#: The user the admin kubeconfig authenticates as; ``system:masters`` bypasses RBAC.
ADMIN_USER = "camerafleet-admin"
ADMIN_GROUP = "system:masters"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"


@dataclass(frozen=True)
class NodeNetwork:
    """Where a control plane that runs Pods listens (cluster mode, ``cluster.py``): the API server binds
    the node's address, which Pods reach, and advertises it as the ``kubernetes`` Service's endpoint."""

    node_ip: str
    service_cidr: str
    pod_cidr: str

    @property
    def kubernetes_service_ip(self) -> str:
        return str(ipaddress.IPv4Network(self.service_cidr)[1])


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

_K8S_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kubectl")
_GO_HINT = (
    "Building the Kubernetes control plane needs Go 1.24 or newer: install it from "
    "https://go.dev/dl/ (or your package manager) and put its bin/ directory on PATH."
)
_CERT_DAYS = 365
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# -- the tool cache ------------------------------------------------------------------------------


def controlplane_home() -> Path:
    """The cache directory of the pinned binaries (``bin/etcd``, ``bin/kube-apiserver``, ...)."""
    return tool_dir("k8s", f"{K8S_VERSION}-etcd-{ETCD_VERSION}")


def kuberay_home() -> Path:
    """The cache directory of the pinned KubeRay CRDs (``crds/*.yaml``)."""
    return tool_dir("kuberay", KUBERAY_VERSION)


def binary(name: str) -> Path:
    """The cached path of ``etcd``, ``kube-apiserver``, ``kube-controller-manager`` or ``kubectl``."""
    if name not in ("etcd", *_K8S_COMMANDS):
        raise ValueError(f"no control-plane binary named {name!r}")
    return controlplane_home() / "bin" / name


def kuberay_crd_paths() -> list[Path]:
    """The cached KubeRay CRD manifests (they may not be fetched yet)."""
    return [kuberay_home() / "crds" / name for name in KUBERAY_CRDS]


def is_fetched() -> bool:
    """Whether the control-plane binaries and the KubeRay CRDs are all in the tool cache."""
    return is_complete(controlplane_home()) and is_complete(kuberay_home())


def fetch_controlplane(out: TextIO | None = None) -> Path:
    """Make sure the pinned control plane and KubeRay CRDs are in the tool cache; return its ``bin/``.

    The first call builds etcd and Kubernetes from source (about 10 minutes of compiling on 2 cores,
    plus the module downloads, with progress on ``out``; the Go module and build caches in ``~/go``
    and ``~/.cache/go-build`` are kept, so later builds of other versions are faster). Safe to call
    from several processes at once.
    """
    out = sys.stderr if out is None else out
    ensure_tool("kuberay", KUBERAY_VERSION, lambda staging: _copy_kuberay_crds(staging, out), out=out)
    home = ensure_tool("k8s", f"{K8S_VERSION}-etcd-{ETCD_VERSION}", lambda staging: _build_binaries(staging, out), out=out)
    return home / "bin"


def _go_env() -> dict[str, str]:
    """The environment for the go commands: static binaries, no workspace, module graph may change.

    GOPATH/GOMODCACHE/GOCACHE keep their defaults (``~/go``, ``~/.cache/go-build``) so that downloads
    and compiled packages are reused by the next build.
    """
    return dict(os.environ, CGO_ENABLED="0", GOWORK="off", GOFLAGS="-mod=mod -buildvcs=false")


def _go_mod_download(go: str, module: str, version: str, work: Path, out: TextIO) -> dict[str, str]:
    """``go mod download -json module@version``: where the module (``Dir``) and its go.mod
    (``GoMod``) are now."""
    log = work / f"download-{module.rsplit('/', 1)[-1]}.log"
    argv = [go, "mod", "download", "-json", f"{module}@{version}"]
    code = run_with_heartbeat(argv, log, cwd=work, what="go mod download", out=out, env=_go_env())
    text = log.read_text(errors="replace")
    try:
        answer, _ = json.JSONDecoder().raw_decode(text, text.index("{"))
    except ValueError:  # no JSON object in the output at all
        answer = {}
    info = {key: str(answer.get(key) or "") for key in ("Dir", "GoMod", "Error")}
    if code != 0 or info["Error"] or not info["Dir"]:
        raise ToolFetchError(
            f"'go mod download {module}@{version}' failed (status {code}): "
            f"{info['Error'] or tail(log, 20)}\nCheck that the Go module proxy ('go env GOPROXY') "
            f"is reachable and serves that version."
        )
    return info


def _copy_kuberay_crds(staging: Path, out: TextIO) -> None:
    go = require_executable("go", _GO_HINT)
    print(f"[camerafleet] fetching the KubeRay {KUBERAY_VERSION} CRDs from the {KUBERAY_MODULE} module ...", file=out, flush=True)
    info = _go_mod_download(go, KUBERAY_MODULE, KUBERAY_VERSION, staging, out)
    source = Path(info["Dir"]) / "config" / "crd" / "bases"
    target = staging / "crds"
    target.mkdir()
    for name in KUBERAY_CRDS:
        if not (source / name).is_file():
            raise ToolFetchError(f"{name} is missing from {source}: has the KubeRay module layout changed in {KUBERAY_VERSION}?")
        shutil.copyfile(source / name, target / name)  # plain copy: module files are read-only
    for log in staging.glob("*.log"):
        log.unlink()


def _staging_modules(kubernetes_go_mod: Path) -> list[str]:
    """The modules k8s.io/kubernetes's go.mod replaces with ``./staging/src/...`` directories."""
    modules = []
    for line in kubernetes_go_mod.read_text().splitlines():
        parts = line.split()
        if parts[:1] == ["replace"]:  # a single-line replace directive rather than a block entry
            parts = parts[1:]
        if "=>" in parts and parts[-1].startswith("./staging/"):
            modules.append(parts[0])
    if not modules:
        raise ToolFetchError(f"found no './staging/...' replace directives in {kubernetes_go_mod}")
    return modules


def _godebug_lines(go_mod: Path) -> list[str]:
    """The ``godebug`` settings of a go.mod, which only take effect in the main module."""
    lines = go_mod.read_text().splitlines()
    return [line for line in lines if line.startswith("godebug ")]


def _go_build(go: str, work: Path, packages: Sequence[str], output: str, ldflags: Sequence[str], what: str, out: TextIO) -> float:
    """Resolve and download ``packages``'s modules, then build them (``go build -o output``).

    Returns the seconds it took.
    """
    started = time.monotonic()
    env = _go_env()
    deps_log = work / "deps.log"
    code = run_with_heartbeat(
        [go, "list", "-deps", *packages], deps_log, cwd=work, what="resolving and downloading modules", out=out, env=env
    )
    if code != 0:
        raise ToolFetchError(
            f"resolving the modules of {what} failed (status {code}). Check that the Go module proxy "
            f"is reachable (GOPROXY) and that Go is 1.24 or newer ('go version'). Last lines:\n"
            f"{tail(deps_log, 30)}"
        )
    total = sum(1 for line in deps_log.read_text().splitlines() if line and " " not in line)
    log = work / "build.log"

    def progress() -> str:
        try:
            lines = log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        compiled = sum(1 for line in lines if line and " " not in line)
        return f"{compiled} of at most {total} packages compiled"

    argv = [go, "build", "-v", "-p", "2", "-trimpath", "-ldflags", " ".join(ldflags), "-o", output, *packages]
    code = run_with_heartbeat(argv, log, cwd=work, what=f"go build ({what})", out=out, env=env, every_s=30.0, detail=progress)
    if code != 0:
        raise ToolFetchError(f"'go build' of {what} failed with status {code}. Last lines of its output:\n{tail(log, 30)}")
    return time.monotonic() - started


def _build_binaries(staging: Path, out: TextIO) -> None:
    go = require_executable("go", _GO_HINT)
    bin_dir = staging / "bin"
    bin_dir.mkdir()
    build_root = staging / "build"  # the wrapper modules, kept for provenance (go.mod, go.sum, logs)

    etcd_work = build_root / "etcd"
    etcd_work.mkdir(parents=True)
    (etcd_work / "go.mod").write_text(
        "// Throwaway wrapper: go install cannot build etcd (its go.mod has relative replaces).\n"
        "module camerafleet.local/etcd-build\n\ngo 1.24.0\n\n"
        f"require {ETCD_MODULE} {ETCD_VERSION}\n"
    )
    print(f"[camerafleet] building etcd {ETCD_VERSION} (1-2 minutes on 2 cores) ...", file=out, flush=True)
    seconds = _go_build(go, etcd_work, [ETCD_MODULE], str(bin_dir / "etcd"), ["-s", "-w"], "etcd", out)
    print(f"[camerafleet] built etcd in {seconds:.0f} s", file=out, flush=True)

    k8s_work = build_root / "kubernetes"
    k8s_work.mkdir(parents=True)
    info = _go_mod_download(go, K8S_MODULE, K8S_VERSION, k8s_work, out)
    kubernetes_go_mod = Path(info["GoMod"])
    replaces = "".join(f"\t{module} => {module} {K8S_STAGING_VERSION}\n" for module in _staging_modules(kubernetes_go_mod))
    godebug = "".join(f"{line}\n" for line in _godebug_lines(kubernetes_go_mod))
    (k8s_work / "go.mod").write_text(
        "// Throwaway wrapper: k8s.io/kubernetes replaces its staging modules with local directories,\n"
        "// which a dependency cannot use, so they are replaced here by their published versions.\n"
        f"module camerafleet.local/k8s-build\n\ngo 1.24.0\n\n{godebug}\n"
        f"require {K8S_MODULE} {K8S_VERSION}\n\nreplace (\n{replaces})\n"
    )
    minor = K8S_VERSION.split(".")[1]
    version_flags = [
        f"-X {package}.{name}={value}"
        for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
        for name, value in (("gitVersion", K8S_VERSION), ("gitMajor", "1"), ("gitMinor", minor), ("gitTreeState", "clean"))
    ]
    print(
        f"[camerafleet] building kube-apiserver, kube-controller-manager and kubectl {K8S_VERSION} "
        f"(one shared compile; about 8 minutes on 2 cores; the wrapper module and build logs are "
        f"kept in {controlplane_home() / 'build'}) ...",
        file=out,
        flush=True,
    )
    seconds = _go_build(
        go,
        k8s_work,
        [f"{K8S_MODULE}/cmd/{name}" for name in _K8S_COMMANDS],
        f"{bin_dir}{os.sep}",
        ["-s", "-w", *version_flags],
        "Kubernetes",
        out,
    )
    print(f"[camerafleet] built kube-apiserver, kube-controller-manager and kubectl in {seconds:.0f} s", file=out, flush=True)
    _check_versions(bin_dir)
    sizes = ", ".join(f"{path.name} {path.stat().st_size / 2**20:.0f} MiB" for path in sorted(bin_dir.iterdir()))
    print(f"[camerafleet] control-plane binaries: {sizes}", file=out, flush=True)


def _check_versions(bin_dir: Path) -> None:
    """Refuse binaries that do not run or do not report the pinned versions."""
    expected = {
        "etcd": ([str(bin_dir / "etcd"), "--version"], f"etcd Version: {ETCD_VERSION[1:]}"),
        "kube-apiserver": ([str(bin_dir / "kube-apiserver"), "--version"], f"Kubernetes {K8S_VERSION}"),
        "kube-controller-manager": ([str(bin_dir / "kube-controller-manager"), "--version"], f"Kubernetes {K8S_VERSION}"),
        "kubectl": ([str(bin_dir / "kubectl"), "version", "--client"], f"Client Version: {K8S_VERSION}"),
    }
    for name, (argv, wanted) in expected.items():
        result = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60)
        if result.returncode != 0 or wanted not in result.stdout:
            raise ToolFetchError(
                f"the freshly built {name} does not report '{wanted}' (status {result.returncode}):\n{result.stdout}{result.stderr}"
            )


# -- certificates ------------------------------------------------------------------------------


class _Pki:
    """The certificates and keys of one control plane, in ``directory`` (created on first use).

    ECDSA P-256 throughout: generating it takes milliseconds, and every component accepts it (the
    ServiceAccount tokens are then signed with ES256).
    """

    def __init__(self, directory: Path, network: NodeNetwork | None = None) -> None:
        self.directory = directory
        self.network = network
        self.ca_cert = directory / "ca.crt"
        self.ca_key = directory / "ca.key"
        self.serving_cert = directory / "apiserver.crt"
        self.serving_key = directory / "apiserver.key"
        self.admin_cert = directory / "admin.crt"
        self.admin_key = directory / "admin.key"
        self.sa_key = directory / "sa.key"  # signs ServiceAccount tokens
        self.sa_pub = directory / "sa.pub"  # verifies them

    def ensure(self) -> None:
        """Create all certificates unless they exist and stay valid for at least another day."""
        if self._valid():
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        now = datetime.datetime.now(datetime.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "camerafleet-dev-ca")])
        ca_cert = (
            self._builder(ca_name, ca_name, ca_key.public_key(), now)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        self._write_key(self.ca_key, ca_key)
        self.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))

        service_ip = ipaddress.ip_address(
            self.network.kubernetes_service_ip if self.network else str(ipaddress.IPv4Network(SERVICE_CLUSTER_IP_RANGE)[1])
        )
        names: list[x509.GeneralName] = [
            x509.DNSName("localhost"),
            x509.DNSName("kubernetes"),
            x509.DNSName("kubernetes.default"),
            x509.DNSName("kubernetes.default.svc"),
            x509.DNSName("kubernetes.default.svc.cluster.local"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(service_ip),
            *([x509.IPAddress(ipaddress.ip_address(self.network.node_ip))] if self.network else []),
        ]
        self._issue(self.serving_cert, self.serving_key, "kube-apiserver", [], ExtendedKeyUsageOID.SERVER_AUTH, names, ca_cert, ca_key, now)
        self._issue(self.admin_cert, self.admin_key, ADMIN_USER, [ADMIN_GROUP], ExtendedKeyUsageOID.CLIENT_AUTH, [], ca_cert, ca_key, now)

        sa_key = ec.generate_private_key(ec.SECP256R1())
        self._write_key(self.sa_key, sa_key)
        self.sa_pub.write_bytes(
            sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )

    def issue(self, name: str, common_name: str, organizations: list[str], *, server_ips: Sequence[str] = ()) -> tuple[Path, Path]:
        """A certificate and key signed by this CA (a client one, or a serving one for ``server_ips``),
        kept in the PKI directory as ``name.crt`` / ``name.key``: for the node's components."""
        cert, key = self.directory / f"{name}.crt", self.directory / f"{name}.key"
        if cert.is_file() and key.is_file():
            return cert, key
        ca_key = serialization.load_pem_private_key(self.ca_key.read_bytes(), password=None)
        ca_cert = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        names: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips]
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server_ips else ExtendedKeyUsageOID.CLIENT_AUTH
        self._issue(cert, key, common_name, organizations, usage, names, ca_cert, ca_key, datetime.datetime.now(datetime.UTC))
        return cert, key

    def _valid(self) -> bool:
        needed = (self.ca_cert, self.ca_key, self.serving_cert, self.serving_key, self.admin_cert, self.admin_key, self.sa_key, self.sa_pub)
        if not all(path.is_file() for path in needed):
            return False
        soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
        for path in (self.ca_cert, self.serving_cert, self.admin_cert):
            if x509.load_pem_x509_certificate(path.read_bytes()).not_valid_after_utc < soon:
                return False
        return True

    @staticmethod
    def _builder(
        subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, now: datetime.datetime
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))  # tolerate small clock skew
            .not_valid_after(now + datetime.timedelta(days=_CERT_DAYS))
        )

    def _issue(
        self,
        cert_path: Path,
        key_path: Path,
        common_name: str,
        organizations: list[str],
        usage: x509.ObjectIdentifier,
        names: list[x509.GeneralName],
        ca_cert: x509.Certificate,
        ca_key: ec.EllipticCurvePrivateKey,
        now: datetime.datetime,
    ) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                *(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations),
            ]
        )
        builder = (
            self._builder(subject, ca_cert.subject, key.public_key(), now)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_encipherment=False,
                    content_commitment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        self._write_key(key_path, key)
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    @staticmethod
    def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
        data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)


def _b64_file(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _write_kubeconfig(
    path: Path, *, server: str, ca_cert: Path, user: str, credentials: Mapping[str, str], namespace: str = "default"
) -> Path:
    """Write a self-contained kubeconfig (certificates inline, mode 0600) atomically."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "camerafleet", "cluster": {"server": server, "certificate-authority-data": _b64_file(ca_cert)}}],
        "users": [{"name": user, "user": dict(credentials)}],
        "contexts": [{"name": user, "context": {"cluster": "camerafleet", "user": user, "namespace": namespace}}],
        "current-context": user,
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w") as handle:
            yaml.safe_dump(config, handle, sort_keys=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# -- the components ----------------------------------------------------------------------------


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


# -- the control plane -------------------------------------------------------------------------


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
    "ETCD_VERSION",
    "K8S_STAGING_VERSION",
    "K8S_VERSION",
    "KUBERAY_CRDS",
    "KUBERAY_VERSION",
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
