"""`go install` of a pinned Go program into a tool-cache staging directory, with progress and a check
that the result runs: how the MinIO server and helm are built from the Go module proxy."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import TextIO

from ._process import require_executable, run_with_heartbeat, tail
from .cache import ToolFetchError


def go_install(
    staging: Path,
    package: str,
    version: str,
    *,
    name: str,
    go_hint: str,
    out: TextIO,
    ldflags: str | None = None,
    version_args: tuple[str, ...] = ("--version",),
    also: tuple[str, ...] = (),
    tags: tuple[str, ...] = (),
) -> str:
    """Build ``package@version`` (and the packages in ``also``, of the same module) into ``staging/bin``
    (CGO off, with build ``tags``); return what ``name version_args`` prints.

    Raises ToolFetchError naming the likely cause and the tail of the build log when it fails.
    """
    go = require_executable("go", go_hint)
    log = staging / "build.log"
    env = dict(os.environ, GOBIN=str(staging / "bin"), CGO_ENABLED="0", GOWORK="off")
    argv = [
        go,
        "install",
        *([f"-ldflags={ldflags}"] if ldflags else []),
        *([f"-tags={','.join(tags)}"] if tags else []),
        *(f"{p}@{version}" for p in (package, *also)),
    ]
    print(
        f"[camerafleet] building {name} {version} with 'go install' (downloads its modules through the "
        f"Go module proxy; takes a few minutes on a 2-core machine; output in {log.name}) ...",
        file=out,
        flush=True,
    )

    def progress() -> str:
        try:
            lines = log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        downloads = sum(1 for line in lines if line.startswith("go: downloading"))
        return f"{downloads} modules downloaded" if downloads else "compiling"

    code = run_with_heartbeat(argv, log, cwd=staging, what="go install", out=out, env=env, detail=progress)
    if code != 0:
        raise ToolFetchError(
            f"'go install {package}@{version}' failed with status {code}. Check that the Go module proxy "
            f"is reachable (GOPROXY) and that Go is 1.24 or newer ('go version'). Last lines of its "
            f"output:\n{tail(log, 30)}"
        )
    built = staging / "bin" / name
    check = subprocess.run([str(built), *version_args], check=False, capture_output=True, text=True, timeout=60)
    if check.returncode != 0:
        raise ToolFetchError(f"the freshly built {built} does not run:\n{check.stdout}{check.stderr}")
    print(f"[camerafleet] built {name} ({built.stat().st_size / 2**20:.0f} MiB)", file=out, flush=True)
    return check.stdout
