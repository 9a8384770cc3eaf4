"""CPU time per pipeline stage, for the benchmark's "where the time goes" table.

Off unless CAMERAFLEET_PROFILE_DIR is set when the process starts (`make bench` sets it before Ray
starts, so actors and Serve replicas inherit it); then `stage(name)` adds the CPU time of its block to
a per-process table that a background thread writes to `<dir>/<pid>.json` once a second. The
benchmark sums the files of all processes. Off, `stage` costs one global lookup.

Stages measure the calling thread's CPU time (sleeps and waits excluded), except where a stage runs
work on other threads (onnxruntime's intra-op pool), which passes `process_wide=True`.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator

import orjson

from camerafleet.api.settings import PROFILE_DIR_ENV, Settings

ENV = PROFILE_DIR_ENV

_dir = Settings.from_env().profile_dir
_on = _dir is not None
_lock = threading.Lock()
_totals: dict[str, list[int]] = {}  # stage -> [cpu ns, frames, calls]
_flusher: threading.Thread | None = None


def enable_in_memory() -> None:
    """Profile this process without writing files (read the table with `snapshot()`)."""
    global _on
    _on = True


@contextlib.contextmanager
def _timed(name: str, frames: int, process_wide: bool) -> Iterator[None]:
    clock = time.process_time_ns if process_wide else time.thread_time_ns
    t0 = clock()
    try:
        yield
    finally:
        record(name, clock() - t0, frames)


def stage(name: str, frames: int = 1, process_wide: bool = False) -> contextlib.AbstractContextManager:
    """Time a block as stage `name` covering `frames` frames (a no-op unless profiling is on)."""
    if not _on:
        return contextlib.nullcontext()
    return _timed(name, frames, process_wide)


def record(name: str, cpu_ns: int, frames: int = 1) -> None:
    global _flusher
    with _lock:
        t = _totals.setdefault(name, [0, 0, 0])
        t[0] += cpu_ns
        t[1] += frames
        t[2] += 1
        if _flusher is None and _dir is not None:
            _flusher = threading.Thread(target=_flush_forever, name="camerafleet-profile", daemon=True)
            _flusher.start()


def snapshot() -> dict[str, dict[str, int]]:
    with _lock:
        return {k: {"cpuNs": v[0], "frames": v[1], "calls": v[2]} for k, v in _totals.items()}


def _flush_forever() -> None:
    assert _dir is not None
    path = os.path.join(_dir, f"{os.getpid()}.json")
    while True:
        time.sleep(1.0)
        payload = orjson.dumps({"pid": os.getpid(), "stages": snapshot()})
        tmp = f"{path}.tmp"
        with open(tmp, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)
