"""The control plane's programs, built once, pinned and cached (the first job of ``controlplane.py``).

kube-apiserver, kube-controller-manager and kubectl are built from ``k8s.io/kubernetes`` through the Go
module proxy, with a throwaway wrapper module that replaces every staging module (``k8s.io/api``,
``k8s.io/client-go``, ...) by its published ``v0.34.x`` version -- ``go install`` refuses modules with
``replace`` directives. etcd is built the same way from ``go.etcd.io/etcd/server/v3``. Both land in the
tool cache (``cache.py``), a directory named after both versions, so a version bump never reuses stale
binaries. The KubeRay CRDs are copied from the ``ray-operator`` module zip. The node's programs
(``node_tools.py``) reuse the wrapper module and the Go helpers here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from ._process import require_executable, run_with_heartbeat, tail
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


_K8S_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kubectl")
_GO_HINT = (
    "Building the Kubernetes control plane needs Go 1.24 or newer: install it from "
    "https://go.dev/dl/ (or your package manager) and put its bin/ directory on PATH."
)


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
