"""Debian packages the dev machinery needs (the node's container tools, the test cameras' GStreamer),
installed with apt when missing: nothing installed by hand survives a fresh machine."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from .cache import ToolFetchError


def missing(packages: Mapping[str, str]) -> list[str]:
    """Of `packages` (a command on PATH or an absolute path, mapped to the package that provides it),
    the packages whose probe is absent."""
    return sorted({pkg for probe, pkg in packages.items() if not (Path(probe).exists() if probe.startswith("/") else shutil.which(probe))})


def install(packages: Mapping[str, str], out: TextIO, purpose: str) -> list[str]:
    """apt-get install those of `packages` that are missing (needs root); returns what was installed."""
    wanted = missing(packages)
    if not wanted:
        return []
    if os.geteuid() != 0:
        raise ToolFetchError(
            f"{purpose} needs the Debian packages {', '.join(wanted)}: run as root, or `apt-get install {' '.join(wanted)}`"
        )
    print(f"[camerafleet] installing Debian packages for {purpose}: {', '.join(wanted)} ...", file=out, flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "--no-install-recommends", *wanted]):
        result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ToolFetchError(f"`{' '.join(argv)}` failed ({result.returncode}):\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return wanted
