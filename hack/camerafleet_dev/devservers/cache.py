"""The shared cache of fetched and built server tools (Kafka jars, the MinIO binary).

Fetching Kafka from Maven Central takes tens of seconds and building MinIO takes minutes, so each tool
is fetched once per machine into ``$CAMERAFLEET_CACHE`` (default ``~/.cache/camerafleet``) and reused by
every checkout, test session and demo. Each tool lives in a directory named after its pinned version
(``kafka-3.9.1/``, ``minio-v0.0.0-.../``), so bumping a version never reuses stale files.

Several processes may ask for the same tool at once (``make -j``, parallel pytest sessions), so a fetch
holds an exclusive ``fcntl`` lock on a per-tool lock file, and the result is built in a temporary
directory that is renamed into place only once it is complete. A directory without its ``.complete``
marker is therefore never used: it is the leftover of an interrupted fetch and is rebuilt.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

CACHE_ENV = "CAMERAFLEET_CACHE"
COMPLETE_MARKER = ".complete"


class ToolFetchError(RuntimeError):
    """A tool could not be fetched or built into the cache."""


def cache_root() -> Path:
    """The cache directory: ``$CAMERAFLEET_CACHE`` if set, else ``~/.cache/camerafleet``."""
    configured = os.environ.get(CACHE_ENV)
    root = Path(configured).expanduser() if configured else Path.home() / ".cache" / "camerafleet"
    return root.absolute()


def tool_dir(name: str, version: str) -> Path:
    """Where version ``version`` of tool ``name`` lives in the cache (it may not exist yet)."""
    if not name or "/" in name or "/" in version or not version:
        raise ValueError(f"invalid tool name/version: {name!r} {version!r}")
    return cache_root() / f"{name}-{version}"


def is_complete(directory: Path) -> bool:
    """Whether ``directory`` holds a tool whose fetch ran to the end."""
    return (directory / COMPLETE_MARKER).is_file()


@contextmanager
def file_lock(path: Path, *, what: str, out: TextIO | None = None) -> Iterator[None]:
    """Hold an exclusive ``fcntl`` lock on ``path`` (created if missing) for the ``with`` body.

    When another process holds it, says so on ``out`` once and then waits for it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if out is not None:
                print(f"[camerafleet] waiting for another process fetching {what} (lock {path})", file=out, flush=True)
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def ensure_tool(
    name: str,
    version: str,
    populate: Callable[[Path], None],
    *,
    out: TextIO | None = None,
) -> Path:
    """Return the cache directory of ``name``/``version``, fetching it first if needed.

    ``populate(staging_dir)`` fills an empty staging directory with the tool and raises on failure; it
    runs at most once at a time per tool across all processes of the machine. The staging directory
    is marked complete and renamed into place only after ``populate`` returns, so a crash or Ctrl-C
    mid-fetch leaves nothing that a later call would mistake for a usable tool.
    """
    out = sys.stderr if out is None else out
    final = tool_dir(name, version)
    if is_complete(final):
        return final
    root = final.parent
    root.mkdir(parents=True, exist_ok=True)
    with file_lock(root / f".{final.name}.lock", what=f"{name} {version}", out=out):
        if is_complete(final):  # another process fetched it while we waited for the lock
            return final
        if final.exists():
            print(f"[camerafleet] removing incomplete {final} left by an interrupted fetch", file=out, flush=True)
            shutil.rmtree(final)
        _remove_stale_staging(root, final.name)
        staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.staging-", dir=root))
        started = time.monotonic()
        try:
            populate(staging)
            (staging / COMPLETE_MARKER).write_text(f"{name} {version} fetched at {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n")
            os.chmod(staging, 0o755)  # mkdtemp made it private; the tools are not secret
            os.rename(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        print(f"[camerafleet] {name} {version} ready in {final} ({time.monotonic() - started:.0f} s)", file=out, flush=True)
        return final


def _remove_stale_staging(root: Path, final_name: str) -> None:
    """Delete staging directories of earlier, interrupted fetches (we hold the tool's lock)."""
    for stale in root.glob(f".{final_name}.staging-*"):
        shutil.rmtree(stale, ignore_errors=True)
