"""The pinned ``helm`` CLI, built from the Go module proxy into the tool cache.

The Helm charts in ``charts/`` are linted, rendered and installed by the tests against the local control
plane (``controlplane.py``). Helm publishes release archives on get.helm.sh, which is not reachable from
every build machine, but ``helm.sh/helm/v3`` has no ``replace`` directives, so ``go install`` builds the
CLI from the Go module proxy at a pinned version. Like the other tools it lands in the shared cache
(``cache.py``) in a directory named after that version (``helm-v3.21.4/bin/helm``), built under a lock
in a staging directory that is renamed into place only once the binary runs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from .cache import ToolFetchError, ensure_tool, is_complete, tool_dir
from .gobuild import go_install

HELM_PACKAGE = "helm.sh/helm/v3/cmd/helm"
#: The newest Helm 3.21 patch release the Go module proxy serves.
HELM_VERSION = "v3.21.4"
#: Helm's release Makefile stamps its version and the Kubernetes version its client-go speaks (the default
#: ``.Capabilities.KubeVersion`` of ``helm template``/``lint``, checked against a chart's ``kubeVersion``)
#: into the binary; ``go install`` alone would leave "v3.21" and Kubernetes 1.20. v3.21.4 uses client-go
#: v0.36.2, i.e. Kubernetes 1.36.
HELM_K8S_VERSION = ("1", "36")
_LDFLAGS = " ".join(
    [
        "-s",
        "-w",
        f"-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}",
        f"-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor={HELM_K8S_VERSION[0]}",
        f"-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor={HELM_K8S_VERSION[1]}",
        f"-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor={HELM_K8S_VERSION[0]}",
        f"-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor={HELM_K8S_VERSION[1]}",
    ]
)

_GO_HINT = (
    "Building helm needs Go 1.24 or newer: install it from https://go.dev/dl/ (or your package "
    "manager) and put its bin/ directory on PATH -- or install helm yourself "
    "(https://helm.sh/docs/intro/install/)."
)


def helm_home() -> Path:
    """The cache directory of the pinned helm (``bin/helm``); it may not be built yet."""
    return tool_dir("helm", HELM_VERSION)


def binary() -> Path:
    """The cached path of the pinned ``helm`` binary (it may not be built yet)."""
    return helm_home() / "bin" / "helm"


def is_fetched() -> bool:
    """Whether the pinned helm is already built in the tool cache."""
    return is_complete(helm_home())


def fetch_helm(out: TextIO | None = None) -> Path:
    """Make sure the pinned helm binary is built in the tool cache; return its path.

    The first call builds it with ``go install`` (a few minutes on 2 cores, with progress on ``out``).
    Safe to call from several processes at once: one builds, the others wait.
    """
    out = sys.stderr if out is None else out
    home = ensure_tool("helm", HELM_VERSION, lambda staging: _build(staging, out), out=out)
    return home / "bin" / "helm"


def _build(staging: Path, out: TextIO) -> None:
    reported = go_install(
        staging, HELM_PACKAGE, HELM_VERSION, name="helm", go_hint=_GO_HINT, out=out, ldflags=_LDFLAGS, version_args=("version", "--short")
    )
    if HELM_VERSION not in reported:
        raise ToolFetchError(f"the freshly built helm reports another version: {reported.strip()}")
