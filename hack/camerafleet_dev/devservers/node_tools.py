"""The programs of a one-node Kubernetes beyond the control plane, built once into the tool cache:
kubelet, kube-scheduler and kube-proxy (from the control plane's wrapper module, same version), CoreDNS
and the KubeRay operator (``go install`` from the Go module proxy), and a tiny ``pause`` for the Pod
sandbox image. The Debian packages the node needs (containerd, runc, CNI plugins, buildah, mmdebstrap,
iptables) are installed with apt when missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TextIO

from . import debian
from ._process import require_executable
from .cache import ToolFetchError, ensure_tool, is_complete, tool_dir
from .controlplane_build import (
    _GO_HINT,
    K8S_MODULE,
    K8S_STAGING_VERSION,
    K8S_VERSION,
    KUBERAY_VERSION,
    _go_build,
    _go_mod_download,
    _godebug_lines,
    _staging_modules,
)
from .gobuild import go_install

NODE_COMMANDS = ("kubelet", "kube-scheduler", "kube-proxy")
#: CoreDNS serves cluster.local from the Kubernetes API, with no upstream (names outside the cluster fail).
COREDNS_VERSION = "v1.15.0"
COREDNS_PACKAGE = "github.com/coredns/coredns"
KUBERAY_PACKAGE = "github.com/ray-project/kuberay/ray-operator"
#: Debian packages of the node, by the command each provides (checked before apt runs at all).
DEBIAN_PACKAGES = {
    "containerd": "containerd",
    "runc": "runc",
    "/usr/lib/cni/bridge": "containernetworking-plugins",
    "buildah": "buildah",
    "mmdebstrap": "mmdebstrap",
    "iptables": "iptables",
    "ipset": "ipset",  # the NetworkPolicy agent's address sets (cluster/policy_agent.py)
}

_PAUSE_GO = """// The Pod sandbox: holds the Pod's namespaces, reaps orphans, exits on SIGTERM/SIGINT.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range signals {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var status syscall.WaitStatus
			if pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
}
"""


NODE_TOOLS_VERSION = f"{K8S_VERSION}-coredns-{COREDNS_VERSION}-kuberay-{KUBERAY_VERSION}"


def node_home() -> Path:
    return tool_dir("k8s-node", NODE_TOOLS_VERSION)


def binary(name: str) -> Path:
    """The cached path of kubelet, kube-scheduler, kube-proxy, coredns, ray-operator or pause."""
    if name not in (*NODE_COMMANDS, "coredns", "ray-operator", "pause"):
        raise ValueError(f"no node binary named {name!r}")
    return node_home() / "bin" / name


def is_fetched() -> bool:
    return is_complete(node_home()) and not missing_packages()


def missing_packages() -> list[str]:
    """The Debian packages of the node that are not installed."""
    return debian.missing(DEBIAN_PACKAGES)


def install_packages(out: TextIO) -> None:
    """apt-get install the node's Debian packages that are missing (needs root, like the node itself)."""
    if debian.install(DEBIAN_PACKAGES, out, "the one-node Kubernetes"):
        # Debian starts containerd as a service on install; the node runs its own, with its own config.
        subprocess.run(["systemctl", "disable", "--now", "containerd"], capture_output=True, check=False)


def fetch_node_tools(out: TextIO | None = None) -> Path:
    """Install the Debian packages and build the node's binaries (once); return the ``bin/`` directory."""
    out = sys.stderr if out is None else out
    install_packages(out)
    return ensure_tool("k8s-node", NODE_TOOLS_VERSION, lambda staging: _build(staging, out), out=out) / "bin"


def _build(staging: Path, out: TextIO) -> None:
    go = require_executable("go", _GO_HINT)
    bin_dir = staging / "bin"
    bin_dir.mkdir()
    work = staging / "build" / "kubernetes"
    work.mkdir(parents=True)
    info = _go_mod_download(go, K8S_MODULE, K8S_VERSION, work, out)
    go_mod = Path(info["GoMod"])
    replaces = "".join(f"\t{module} => {module} {K8S_STAGING_VERSION}\n" for module in _staging_modules(go_mod))
    godebug = "".join(f"{line}\n" for line in _godebug_lines(go_mod))
    (work / "go.mod").write_text(
        "// Throwaway wrapper, as for the control plane (see controlplane.py).\n"
        f"module camerafleet.local/k8s-node-build\n\ngo 1.24.0\n\n{godebug}\nrequire {K8S_MODULE} {K8S_VERSION}\n\nreplace (\n{replaces})\n"
    )
    minor = K8S_VERSION.split(".")[1]
    ldflags = ["-s", "-w"] + [
        f"-X {package}.{name}={value}"
        for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
        for name, value in (("gitVersion", K8S_VERSION), ("gitMajor", "1"), ("gitMinor", minor), ("gitTreeState", "clean"))
    ]
    print(
        f"[camerafleet] building kubelet, kube-scheduler and kube-proxy {K8S_VERSION} (about 3 minutes after the control plane) ...",
        file=out,
        flush=True,
    )
    seconds = _go_build(go, work, [f"{K8S_MODULE}/cmd/{name}" for name in NODE_COMMANDS], f"{bin_dir}{os.sep}", ldflags, "the node", out)
    print(f"[camerafleet] built the node's Kubernetes binaries in {seconds:.0f} s", file=out, flush=True)

    for package, version, name, check in (
        (COREDNS_PACKAGE, COREDNS_VERSION, "coredns", ("-version",)),
        (KUBERAY_PACKAGE, KUBERAY_VERSION, "ray-operator", ("-help",)),
    ):
        sub = staging / "build" / name
        sub.mkdir(parents=True)
        (sub / "bin").mkdir()
        go_install(sub, package, version, name=name, go_hint=_GO_HINT, out=out, version_args=check)
        shutil.move(str(sub / "bin" / name), bin_dir / name)

    pause = staging / "build" / "pause"
    pause.mkdir(parents=True)
    (pause / "go.mod").write_text("module camerafleet.local/pause\n\ngo 1.24.0\n")
    (pause / "main.go").write_text(_PAUSE_GO)
    env = dict(os.environ, CGO_ENABLED="0", GOWORK="off")
    result = subprocess.run(
        [go, "build", "-trimpath", "-ldflags=-s -w", "-o", str(bin_dir / "pause"), "."],
        cwd=pause,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ToolFetchError(f"building the pause program failed:\n{result.stderr}")
