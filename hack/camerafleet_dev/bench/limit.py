"""The limit: the per-frame work of the pipeline in tight loops with nothing distributed.

One process per core, each with its own copy of every model (one onnxruntime thread) and of the camera
clips, repeats: decode source frames as the producer does (grabbing the frames between samples), JPEG-
encode, decode the JPEG, then batched inference of every model (preprocess, run, postprocess). No Kafka,
bucket, Ray or Serve. The sum of the processes' frames/s is what the pipeline could reach if
distribution cost nothing; the pipeline's efficiency is its own rate divided by this one.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from camerafleet.api.manifest import FleetSpec


def _run_worker(spec_json: str, grabs_per_frame: int, seconds: float, barrier: Any, results: Any) -> None:
    cv2.setNumThreads(1)
    from camerafleet import profiling
    from camerafleet.imaging import decode_jpeg
    from camerafleet.models.registry import create_model

    spec = FleetSpec.model_validate_json(spec_json)
    models = []
    for m in spec.models:
        model = create_model(m.model_copy(update={"resources": m.resources.model_copy(update={"cpus": 1.0, "gpus": m.resources.gpus})}))
        model.load()
        model.infer([np.zeros((720, 1280, 3), np.uint8)])  # first-run cost, as the Serve replicas pay it before traffic
        models.append(model)
    batch_size = min(m.batching.max_batch_size for m in spec.models)
    caps = [cv2.VideoCapture(c.source, cv2.CAP_ANY, [cv2.CAP_PROP_N_THREADS, 1]) for c in spec.cameras if c.enabled]
    cpu: dict[str, float] = defaultdict(float)
    batch_ms: list[float] = []
    frames = 0

    def timed(name: str, fn: Callable[..., Any], *args: Any, clock: Callable[[], float] = time.thread_time) -> Any:
        t0 = clock()
        out = fn(*args)
        cpu[name] += clock() - t0
        return out

    def read(cap: cv2.VideoCapture) -> np.ndarray:
        for _ in range(grabs_per_frame):
            if not cap.grab():
                cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                cap.grab()
        return cap.retrieve()[1]

    quality = [cv2.IMWRITE_JPEG_QUALITY, spec.bucket.jpeg_quality]
    profiling.enable_in_memory()  # the models' own preprocess / inference / postprocess stages
    barrier.wait()
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        batch = []
        for i in range(batch_size):
            frame = timed("capture", read, caps[(frames + i) % len(caps)])
            jpeg = timed("encode", lambda f: cv2.imencode(".jpg", f, quality)[1].tobytes(), frame)
            batch.append(timed("decode", decode_jpeg, jpeg))
        t0 = time.perf_counter()
        for model in models:
            model.infer(batch)
        batch_ms.append((time.perf_counter() - t0) * 1000)
        frames += batch_size
    for name, st in profiling.snapshot().items():
        cpu[name] += st["cpuNs"] / 1e9
    results.put({"frames": frames, "seconds": time.monotonic() - start, "cpu_s": dict(cpu), "batch_ms": batch_ms, "batch_size": batch_size})


def measure_limit(spec: FleetSpec, grabs_per_frame: int, seconds: float, processes: int | None = None) -> dict[str, Any]:
    """Frames/s of the per-frame work on all cores, the CPU ms per frame by stage, and the wall time of
    one batched inference of all models while every core is busy."""
    n = processes or os.cpu_count() or 1
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [
        ctx.Process(target=_run_worker, args=(spec.model_dump_json(by_alias=True), grabs_per_frame, seconds, barrier, results))
        for _ in range(n)
    ]
    for p in procs:
        p.start()
    answers = [results.get(timeout=seconds + 300) for _ in procs]
    for p in procs:
        p.join()
    frames = sum(a["frames"] for a in answers)
    cpu: dict[str, float] = defaultdict(float)
    for a in answers:
        for k, v in a["cpu_s"].items():
            cpu[k] += v
    batch_ms = [x for a in answers for x in a["batch_ms"]]
    return {
        "processes": n,
        "fps": round(sum(a["frames"] / a["seconds"] for a in answers), 2),
        "frames": frames,
        "cpu_ms_per_frame": {k: round(v * 1000 / max(frames, 1), 2) for k, v in sorted(cpu.items())},
        "batch_size": answers[0]["batch_size"],
        "batch_ms": {
            "p50": round(float(np.percentile(batch_ms, 50)), 1),
            "mean": round(float(np.mean(batch_ms)), 1),
            "p95": round(float(np.percentile(batch_ms, 95)), 1),
        },
    }
