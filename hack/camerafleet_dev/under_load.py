"""`make test-under-load`: CI's own script on a fresh clone while other work holds the cores busy.

The suite must pass on any machine that runs it, and machines differ (CenterFace 640x384 took 23 ms a frame
on one 2-core machine and 37-44 ms on another). A test that counts on the machine's speed shows itself
here: CPU hogs take a share of every core for the whole run, the way a neighbour on a shared runner does.

    python -m camerafleet_dev.under_load --cores 1 --duty 1.0 -- bash .ci/run     # one core held busy
    python -m camerafleet_dev.under_load --cores 2 --duty 0.5 -- bash .ci/run     # both cores half loaded

Before the command starts it prints the machine's CenterFace ms/frame (idle, then under the load), so
that a reader can compare run times across machines. The hogs are plain processes at normal priority:
the kernel shares the cores between them and the suite as it would with any other busy neighbour.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SLICE_S = 0.1  # a hog is busy `duty` of each 100 ms slice and sleeps the rest: the scheduler sees a steady load


def hog(duty: float) -> None:
    """Spin for `duty` of every slice, for ever (the parent kills it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the run; the parent ends the hogs
    while True:
        start = time.monotonic()
        while time.monotonic() - start < duty * SLICE_S:
            pass
        if duty < 1:
            time.sleep(max(0.0, SLICE_S - (time.monotonic() - start)))


def centerface_ms_per_frame(model: Path, frames: int = 30) -> float | None:
    """Median ms of one CenterFace 640x384 inference on 2 threads (the figure FIELD-NOTES compares machines by);
    None when the model has not been prepared yet (`make models`)."""
    if not model.exists():
        return None
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    batch = np.random.default_rng(0).random((1, 3, 384, 640), dtype=np.float32)
    for _ in range(3):
        session.run(None, {name: batch})
    times = []
    for _ in range(frames):
        started = time.perf_counter()
        session.run(None, {name: batch})
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def describe_speed(model: Path) -> str:
    ms = centerface_ms_per_frame(model)
    return "CenterFace 640x384: models not prepared yet" if ms is None else f"CenterFace 640x384: {ms:.1f} ms/frame"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m camerafleet_dev.under_load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cores", type=int, default=1, help="hog processes, one per core to load (default 1)")
    parser.add_argument("--duty", type=float, default=1.0, help="share of each core a hog keeps busy, 0 to 1 (default 1)")
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "centerface.onnx", help="model the speed line is measured on")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run under the load (after --)")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --, e.g. -- bash .ci/run")
    if not (0 < args.duty <= 1) or args.cores < 0:
        parser.error("--duty must be in (0, 1] and --cores at least 0")

    load = f"{args.cores} hog(s) at {args.duty:.0%} of a core each (machine: {os.cpu_count()} cores)"
    print(f"[under-load] idle: {describe_speed(args.model)}", flush=True)
    hogs = [multiprocessing.Process(target=hog, args=(args.duty,), daemon=True) for _ in range(args.cores)]
    for h in hogs:
        h.start()
    try:
        print(f"[under-load] {load}: {describe_speed(args.model)}", flush=True)
        print(f"[under-load] running {' '.join(command)}", flush=True)
        started = time.monotonic()
        rc = subprocess.call(command)
        took = time.monotonic() - started
    finally:
        for h in hogs:
            h.kill()
            h.join()
    print(f"[under-load] {' '.join(command)} exited {rc} after {took / 60:.1f} min with {load}", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
