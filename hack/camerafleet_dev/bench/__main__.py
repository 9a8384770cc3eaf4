"""`python -m camerafleet_dev.bench --profile quick|full|tiny --out out/bench` (what `make bench` runs).

Phases, all in one run on the same frames (the demo clips) and models (CenterFace + camera health):
 1. limit        the per-frame work in tight loops on every core, nothing distributed (`limit.py`); and its variants
                 side by side: decode at the models' scale, OpenVINO, INT8, each with its accuracy against today's path
 2. saturation   the pipeline offered ~1.1x the limit (cameras at 5 fps): processed frames/s = saturation; efficiency
 3. old design   the same load through the original design (`baseline.py`: a frame per request, models in turn)
 4. load 50/80%  latency at half and four fifths of saturation; the old design at 50% too
 5. 150 cameras  fairness and lag with many cameras at a low inferenceFps
 6. overload     2x saturation with maxFrameAgeMs 2000: bounded latency, drops with reasons; the same without admission
                 at the source (producers take every slot); and the load sweep 1x, 1.5x, 3x (with 0.5x and 2x:
                 throughput and latency against offered load)
 7. autoscaling  a load step with fast autoscaling settings: seconds to scale up and back down
    elastic      a load step (a fifth of saturation, four fifths, a fifth) through autoscaled producer and consumer
                 pools, and through fixed ones: when the pipeline keeps up again, when the pools are back down, and
                 what each costs (`elastic.py`)
 8. live cameras producer CPU per 1080p30 RTSP/MJPEG camera by decoding mode, and cameras per core (`live.py`)
Memory and CPU are sampled all along (`probe.py`); stage CPU comes from CAMERAFLEET_PROFILE_DIR.
Kafka is started for the run unless KAFKA_BOOTSTRAP names a broker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from camerafleet import profiling
from camerafleet.api.manifest import FleetSpec
from camerafleet.api.serve_options import default_serve_controller_env
from camerafleet.api.settings import Settings
from camerafleet.runner import FleetRunner
from camerafleet.sources.grid import camera_grid
from camerafleet_dev.bench.elastic import elastic_figures, elastic_step, phase_name
from camerafleet_dev.bench.limit import format_variants, measure_limit, measure_variants
from camerafleet_dev.bench.live import measure_live
from camerafleet_dev.bench.phases import BASELINE, FAST_AUTOSCALING, Bench, PhaseResult
from camerafleet_dev.bench.profiles import PROFILES, BenchProfile
from camerafleet_dev.bench.report import write_report

ROOT = Path.cwd()
OVERLOAD_MAX_FRAME_AGE_MS = 2000
CLIP_FPS = 30  # the demo clips' frame rate
SATURATION_CAMERA_FPS = 5.0  # the limit loop and the saturation phase sample every 6th frame of the clips, the same way


def sweep_phase(multiple: float) -> str:
    """The phase of the load sweep at `multiple` x saturation: 0.5x and 2x are the 50% load and overload phases."""
    return {0.5: "load_50", 2.0: "overload"}.get(multiple, f"load_{round(multiple * 100)}")


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def detect_gpus() -> float:
    """GPUs Ray sees, if onnxruntime can use CUDA; 0 on CPU-only machines."""
    import onnxruntime as ort
    import ray

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return 0.0
    return float(ray.cluster_resources().get("GPU", 0))


async def autoscaling_step(bench: Bench, p: BenchProfile, sat: float) -> PhaseResult:
    """Light load, then a step to 1.5x saturation, then none: when do replicas follow?"""
    base_fps = max(0.2, 0.1 * sat)
    step_cams = p.load_cameras
    step_fps = 1.5 * sat / step_cams
    total = 1 + step_cams

    def manifest(step: bool, idle: bool = False) -> dict[str, Any]:
        return bench.manifest(
            "autoscaling",
            total,
            0,
            autoscaling=FAST_AUTOSCALING,
            enabled=lambda i: (i == 1 and not idle) or (i > 1 and step),
            camera_fps=lambda i: base_fps if i == 1 else step_fps,
        )

    async def during(runner: FleetRunner, path: Path) -> dict[str, Any]:
        await asyncio.sleep(p.step_idle_seconds)
        await asyncio.to_thread(path.write_text, yaml.safe_dump(manifest(True), sort_keys=False))
        t_step = time.time()
        await asyncio.sleep(p.step_load_seconds)
        await asyncio.to_thread(path.write_text, yaml.safe_dump(manifest(False, idle=True), sort_keys=False))
        t_unload = time.time()
        return {"step_written_at": t_step, "unload_written_at": t_unload}

    seconds = p.step_idle_seconds + p.step_load_seconds + p.step_after_seconds
    return await bench.run(
        "autoscaling", manifest(False), seconds, p.warmup_seconds, during, sample_interval_s=p.step_sample_interval_seconds
    )


def scaling_times(phase: PhaseResult) -> dict[str, Any]:
    """Seconds from the first frame of the step to the second replica, and from the last frame of the
    step to the return to one replica, read from the sampled replica counts."""
    step_caps = [r["captureTsMs"] / 1000 for r in phase.records if r["cameraId"] != "1"]
    out: dict[str, Any] = {"settings": FAST_AUTOSCALING, "scale_up_s": None, "scale_down_s": None}
    if not step_caps:
        return out
    load_start, load_end = min(step_caps), max(step_caps)
    running = [(r["wall"], r["replicas"].get("model-faces", 0)) for r in phase.series]
    started = [(r["wall"], r["replicas"].get("model-faces (incl. starting)", 0)) for r in phase.series]
    added = next((t for t, n in started if t >= load_start and n >= 2), None)
    up = next((t for t, n in running if t >= load_start and n >= 2), None)
    down = next((t for t, n in started if up is not None and t >= max(load_end, up) and n <= 1), None)
    out.update(
        load_start_s=round(load_start - phase.t_start, 2),
        load_end_s=round(load_end - phase.t_start, 2),
        scale_up_s=round(added - load_start, 2) if added else None,
        scale_up_serving_s=round(up - load_start, 2) if up else None,
        scale_down_s=round(down - load_end, 2) if down else None,
        max_replicas_seen=max((n for _, n in running), default=0),
    )
    return out


def fleet_fairness(phase: PhaseResult, fps: float) -> dict[str, Any]:
    """How evenly the many-camera phase served its cameras after the warm-up: each camera's processed frames as a
    share of its own slots there. Counted by slot, not by capture time, because slots are spread over the period
    (`slot_phase_s`): with three slots per camera in the window some cameras have four, and raw counts of 3 and 4
    read 0.75 for a phase that processed every slot."""
    lo, hi = phase.window
    epoch_s = phase.records[0]["epochMs"] / 1000 if phase.records else phase.t_start
    slots = {}
    for i in range(1, phase.cameras + 1):
        grid = camera_grid(epoch_s, str(i), fps)
        slots[str(i)] = range(grid.first_at_or_after(lo), grid.slot_of(hi) + 1)
    per_cam = dict.fromkeys(slots, 0)
    not_processed: Counter[str] = Counter()  # after the warm-up: stale frames there mean the phase did not keep up
    for r in phase.records:
        if r["seq"] in slots.get(r["cameraId"], ()):
            if r["outcome"] == "processed":
                per_cam[r["cameraId"]] += 1
            else:
                not_processed[r["reason"]] += 1
    counts = sorted(per_cam.values())
    shares = sorted(per_cam[c] / len(s) for c, s in slots.items() if len(s))
    lags = [r["lag"] for r in phase.series if lo <= r["wall"] <= hi]
    half = len(lags) // 2
    return {
        "cameras_served": sum(c > 0 for c in counts),
        "fewest_frames": counts[0],
        "most_frames": counts[-1],
        "slots_per_camera": [min(map(len, slots.values()), default=0), max(map(len, slots.values()), default=0)],
        "fewest_share": round(shares[0], 3) if shares else None,
        "most_share": round(shares[-1], 3) if shares else None,
        "fairness": round(shares[0] / shares[-1], 3) if shares and shares[-1] else None,  # None: no camera got a frame through
        "not_processed_in_window": dict(not_processed),
        "shed": phase.summary["missed_by_reason"].get("shed", 0),  # the whole phase's: a slot shed has no capture time
        "producer_cpu_s": round(phase.cpu_s.get("producer", 0.0), 2),
        "models_cpu_s": round(sum(v for k, v in phase.cpu_s.items() if k.startswith("model ")), 2),
        "lag_max": max(lags, default=0),
        "lag_mean_first_half": round(sum(lags[:half]) / max(half, 1), 1),
        "lag_mean_second_half": round(sum(lags[half:]) / max(len(lags) - half, 1), 1),
        "per_camera_processed": per_cam,
    }


async def run_all(p: BenchProfile, out: Path, bootstrap: str, profile_dir: Path, clips: list[Path]) -> dict[str, Any]:
    import ray
    from ray import serve

    bench = Bench(
        out=out,
        bootstrap=bootstrap,
        clips=clips,
        models=ROOT / "models",
        profile_dir=profile_dir,
        sample_interval_s=p.sample_interval_seconds,
        gpus=0.0,
        settle_max_s=p.settle_max_seconds,
    )
    default_serve_controller_env(os.environ)  # as `camerafleet run` starts its local instance
    ray.init(address="local", namespace="camerafleet-bench", include_dashboard=False, logging_level=logging.WARNING)
    bench.gpus = 0.5 if detect_gpus() else 0.0
    port = Settings.from_env().serve_port
    serve.start(http_options={"host": "127.0.0.1", "port": port}, logging_config={"enable_access_log": False, "log_level": "WARNING"})
    cams = p.load_cameras
    phases: dict[str, PhaseResult] = {}
    try:
        say(f"== limit: the per-frame work on {os.cpu_count()} cores, no distribution, {p.limit_seconds:.0f} s ==")
        limit_spec = FleetSpec.model_validate(bench.manifest("limit", cams, SATURATION_CAMERA_FPS)["spec"])
        limit = measure_limit(limit_spec, seconds=p.limit_seconds)
        say(f"limit: {limit['fps']} frames/s")
        say(f"== limit variants: decode scale, inference engines, INT8; {p.variant_seconds:.0f} s each ==")
        variants = measure_variants(
            limit_spec,
            grabs_per_frame=round(CLIP_FPS / SATURATION_CAMERA_FPS),
            seconds=p.variant_seconds,
            work_dir=out / "models",
            accuracy_frames_per_camera=p.accuracy_frames_per_camera,
            say=say,
        )
        say(format_variants(variants))
        # Saturation cameras sample exactly as the limit loop does (every 6th frame of the 30 fps clips).
        sat_cams = max(1, round(1.1 * limit["fps"] / SATURATION_CAMERA_FPS))
        phases["saturation"] = await bench.run(
            "saturation", bench.manifest("saturation", sat_cams, SATURATION_CAMERA_FPS), p.saturation_seconds, p.warmup_seconds
        )
        # The limit again, right after: the machine's speed drifts by minutes (the same loop measured 31.8 to 34.7
        # frames/s in one session's runs), so efficiency divides saturation by the mean of the readings that bracket it.
        say(f"== limit again, right after saturation, {p.limit_seconds:.0f} s ==")
        limit_after = measure_limit(limit_spec, seconds=p.limit_seconds)
        say(f"limit: {limit_after['fps']} frames/s (before saturation {limit['fps']})")
        # The partial loads and the overload are fractions of the measured saturation; on a machine so busy that
        # saturation processed nothing, of the limit instead (the report says which).
        measured_sat = phases["saturation"].processed_fps()
        sat = measured_sat if measured_sat > 0 else limit["fps"]
        reference = {"fps": sat, "from": "saturation" if measured_sat > 0 else "limit (the saturation phase processed no frame)"}
        phases["old_design"] = await bench.run(
            "old_design",
            bench.manifest("old_design", sat_cams, SATURATION_CAMERA_FPS, design=BASELINE),
            p.saturation_seconds,
            p.warmup_seconds,
        )
        for frac in (0.5, 0.8):
            name = f"load_{int(frac * 100)}"
            if name not in p.skip_phases:
                phases[name] = await bench.run(name, bench.manifest(name, cams, frac * sat / cams), p.load_seconds, p.warmup_seconds)
        if "old_design_load_50" not in p.skip_phases:
            phases["old_design_load_50"] = await bench.run(
                "old_design_load_50",
                bench.manifest("old_design_load_50", cams, 0.5 * sat / cams, design=BASELINE),
                p.load_seconds,
                p.warmup_seconds,
            )
        n = p.fleet_cameras
        fleet_fps = p.fleet_load_fraction * sat / n
        # Two slots of each camera warm up, and at least three more are measured, however slow the machine (and so
        # the cameras' rate): a phase shorter than its warm-up would have nothing to judge.
        fleet_warmup_s = max(p.warmup_seconds, 2 / fleet_fps)
        phases["many_cameras"] = await bench.run(
            "many_cameras",
            bench.manifest("many_cameras", n, fleet_fps),
            max(p.fleet_seconds, fleet_warmup_s + 3 / fleet_fps),
            fleet_warmup_s,
        )
        phases["many_cameras"].notes["fairness"] = fleet_fairness(phases["many_cameras"], fleet_fps)
        phases["overload"] = await bench.run(
            "overload",
            bench.manifest("overload", cams, 2 * sat / cams, max_frame_age_ms=OVERLOAD_MAX_FRAME_AGE_MS),
            p.overload_seconds,
            p.warmup_seconds,
        )
        if "overload_no_admission" not in p.skip_phases:
            phases["overload_no_admission"] = await bench.run(
                "overload_no_admission",
                bench.manifest("overload_no_admission", cams, 2 * sat / cams, max_frame_age_ms=OVERLOAD_MAX_FRAME_AGE_MS, admission=False),
                p.overload_seconds,
                p.warmup_seconds,
            )
        for multiple in p.sweep_multiples:
            name = sweep_phase(multiple)
            if name not in phases:
                manifest = bench.manifest(name, cams, multiple * sat / cams, max_frame_age_ms=OVERLOAD_MAX_FRAME_AGE_MS)
                phases[name] = await bench.run(name, manifest, p.load_seconds, p.warmup_seconds)
        for name in ("overload", "overload_no_admission", *(sweep_phase(m) for m in p.sweep_multiples if m > 0.5)):
            if name in phases:
                phases[name].notes["max_frame_age_ms"] = OVERLOAD_MAX_FRAME_AGE_MS
        phases["autoscaling"] = await autoscaling_step(bench, p, sat)
        phases["autoscaling"].notes["autoscaling"] = scaling_times(phases["autoscaling"])
        for autoscaled in (True, False):
            phases[phase_name(autoscaled)] = await elastic_step(bench, p, sat, autoscaled)
        phases["elastic"].notes["elastic"] = elastic_figures(phases["elastic"], phases["elastic_fixed"])
    finally:
        serve.shutdown()
        ray.shutdown()
    say(f"== live cameras: producer CPU per 1080p30 camera, {', '.join(p.live_streams)} ==")
    live = await asyncio.to_thread(measure_live, out / "live", p.live_seconds, p.live_streams, p.live_fps, p.live_capacity, say)
    return {
        "profile": p,
        "limit": limit,
        "limit_readings_fps": [limit["fps"], limit_after["fps"]],
        "variants": variants,
        "load_reference": reference,
        "phases": phases,
        "series": bench.all_series,
        "gpus": bench.gpus,
        "live": live,
        "sweep": {m: sweep_phase(m) for m in p.sweep_multiples},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m camerafleet_dev.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    ap.add_argument("--out", type=Path, default=Path("out/bench"))
    ap.add_argument(
        "--clips", type=Path, default=Path("out/demo/clips"), help="directory with camera_1.mp4 and camera_2.mp4 (`make clips`)"
    )
    args = ap.parse_args(argv)
    profile = PROFILES[args.profile]
    out = args.out.resolve()
    if out.exists():
        shutil.rmtree(out)
    profile_dir = out / "profile"
    profile_dir.mkdir(parents=True)
    clips = [next(iter(sorted(args.clips.glob(f"camera_{i}.*"))), args.clips / f"camera_{i}.mp4").resolve() for i in (1, 2)]
    missing = [str(p) for p in (*clips, ROOT / "models/centerface.onnx") if not p.exists()]
    if missing:
        say(f"missing {', '.join(missing)}: run `make models clips` (or `make bench`, which does)")
        return 2
    # Actors and replicas inherit the environment of the Ray instance this process starts.
    os.environ[profiling.ENV] = str(profile_dir)
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP")
        if not bootstrap:
            from camerafleet_dev.devservers.kafka import KafkaServer

            kafka = stack.enter_context(KafkaServer(out / "kafka"))
            bootstrap = kafka.bootstrap
            say(f"kafka: started a broker at {bootstrap} for the benchmark")
        results = asyncio.run(run_all(profile, out, bootstrap, profile_dir, clips))
    results["wall_s"] = round(time.monotonic() - started, 1)
    print(write_report(results, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
