"""One benchmark phase = one real fleet run (producers, bucket, Kafka, consumers, Serve) on the shared
Ray instance, with the load, design and settings of that phase, sampled while it runs."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psutil
import yaml

from camerafleet.api.manifest import load_manifest
from camerafleet.api.settings import Settings
from camerafleet.runner import FleetRunner, RunOptions
from camerafleet.summary import percentiles
from camerafleet_dev.bench import baseline
from camerafleet_dev.bench.probe import ProcessProbe, TimeSeries, cpu_by_component

APP = "bench"
BATCHED, BASELINE = "batched-fanout", "per-frame-sequential"  # the product's design, and the original one (baseline.py)

# Fast autoscaling settings of the load-step phase (named in the report).
FAST_AUTOSCALING = {
    "minReplicas": 1,
    "maxReplicas": 2,
    "targetOngoingRequests": 2,
    "upscaleDelaySeconds": 1,
    "downscaleDelaySeconds": 5,
    "metricsIntervalSeconds": 0.5,
    "lookBackPeriodSeconds": 2,
}


@dataclass
class PhaseResult:
    name: str
    cameras: int
    offered_fps: float
    design: str
    t_start: float
    t_end: float
    warmup_s: float
    summary: dict[str, Any]
    records: list[dict[str, Any]]
    series: list[dict[str, Any]]
    cpu_s: dict[str, float]
    stages: dict[str, dict[str, float]]
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def window(self) -> tuple[float, float]:
        return self.t_start + self.warmup_s, self.t_end

    def processed_fps(self) -> float:
        """Frames whose results were written per second, over the phase after its warm-up."""
        lo, hi = self.window
        done = [r for r in self.records if r["outcome"] == "processed" and lo <= (r["captureTsMs"] + r["latencyMs"]) / 1000 <= hi]
        return round(len(done) / max(hi - lo, 1e-9), 2)

    def measured(self) -> list[dict[str, Any]]:
        """Processed frames captured after the warm-up: what the phase's per-frame numbers are made of."""
        lo, hi = self.window
        return [r for r in self.records if r["outcome"] == "processed" and lo <= r["captureTsMs"] / 1000 <= hi]

    def latency(self) -> dict[str, float | None]:
        """Capture-to-result latency of the frames captured after the warm-up."""
        return percentiles([r["latencyMs"] for r in self.measured()])

    def latency_bound(self, max_frame_age_ms: int, transit_ms: int = 100) -> dict[str, Any]:
        """Processed frames against the bound maxFrameAgeMs + their own (slowest) model batch + `transit_ms`:
        how many exceed it, and the longest latency and batch seen."""
        over, longest, longest_batch = 0, 0, 0.0
        for r in self.records:
            if r["outcome"] != "processed":
                continue
            batch_ms = max((m.get("batchMs", 0.0) for m in r.get("models", {}).values()), default=0.0)
            over += r["latencyMs"] > max_frame_age_ms + batch_ms + transit_ms
            longest, longest_batch = max(longest, r["latencyMs"]), max(longest_batch, batch_ms)
        return {"frames_over_bound": over, "max_latency_ms": longest, "max_batch_ms": longest_batch, "transit_ms": transit_ms}

    def brief(self) -> dict[str, Any]:
        s = self.summary
        return {
            "cameras": self.cameras,
            "design": self.design,
            "offered_fps": round(self.offered_fps, 2),
            "processed_fps": self.processed_fps(),
            "latency_ms": self.latency(),
            "ledger": {k: s[k] for k in ("produced", "processed", "dropped", "failed", "in_flight", "duplicates", "ledger_balanced")},
            "dropped_by_reason": s["dropped_by_reason"],
            "failed_by_reason": s["failed_by_reason"],
            "missed_by_reason": s["missed_by_reason"],
            "batch_size": s["batch_size"],
            "cpu_s_by_component": self.cpu_s,
            "peak_rss_bytes": peak_rss(self.series),
            "max_lag": max((r["lag"] for r in self.series), default=0),
            **self.notes,
        }


SETTLE_CPU_PERCENT = 35.0  # the machine counts as quiet below this much CPU use (all cores; Ray and Kafka idle at ~10-20%)


async def settle(max_s: float) -> None:
    """Wait (up to `max_s`) until the previous phase's work has died down: an overloaded phase leaves
    replicas finishing batches, Serve apps being deleted and Kafka compacting, which would otherwise land
    on the first seconds of the next phase."""
    if max_s <= 0:
        return
    started = time.monotonic()
    while time.monotonic() - started < max_s and await asyncio.to_thread(psutil.cpu_percent, 1.0) > SETTLE_CPU_PERCENT:
        pass
    print(f"(waited {time.monotonic() - started:.0f} s for the machine to settle)", file=sys.stderr, flush=True)


def peak_rss(series: list[dict[str, Any]]) -> dict[str, int]:
    """Peak resident memory of the whole run (`total`) and of each component over a series."""
    peaks: dict[str, int] = {"total": max((sum(r["rss"].values()) for r in series), default=0)}
    for row in series:
        for name, value in row["rss"].items():
            peaks[name] = max(peaks.get(name, 0), value)
    return peaks


def read_profiles(directory: Path) -> dict[int, dict[str, dict[str, int]]]:
    out = {}
    for f in directory.glob("*.json"):
        try:
            data = orjson.loads(f.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            continue
        out[data["pid"]] = data["stages"]
    return out


def stage_cpu(before: dict, after: dict) -> dict[str, dict[str, float]]:
    """CPU seconds and calls per stage between two profile snapshots (all processes summed)."""
    total: dict[str, dict[str, float]] = {}
    for pid, stages in after.items():
        for name, s in stages.items():
            prev = before.get(pid, {}).get(name, {"cpuNs": 0, "frames": 0, "calls": 0})
            t = total.setdefault(name, {"cpu_s": 0.0, "frames": 0, "calls": 0})
            t["cpu_s"] += (s["cpuNs"] - prev["cpuNs"]) / 1e9
            t["frames"] += s["frames"] - prev["frames"]
            t["calls"] += s["calls"] - prev["calls"]
    return total


class Bench:
    """Builds each phase's manifest from the bench fleet and runs it."""

    def __init__(
        self,
        *,
        out: Path,
        bootstrap: str,
        clips: list[Path],
        models: Path,
        profile_dir: Path,
        sample_interval_s: float,
        gpus: float,
        settle_max_s: float = 30.0,
    ):
        self.out, self.bootstrap, self.clips, self.models = out, bootstrap, clips, models
        self.profile_dir, self.sample_interval_s, self.gpus = profile_dir, sample_interval_s, gpus
        self.settle_max_s = settle_max_s
        self.probe = ProcessProbe()
        self.all_series: list[dict[str, Any]] = []

    def manifest(
        self,
        phase: str,
        cameras: int,
        fps: float,
        *,
        design: str = BATCHED,
        max_frame_age_ms: int = 10_000,
        autoscaling: dict | None = None,
        admission: bool = True,
        enabled: Callable[[int], bool] = lambda i: True,
        camera_fps: Callable[[int], float] | None = None,
    ) -> dict[str, Any]:
        """The bench fleet for one phase (a CameraFleet manifest as a mapping)."""
        gpu = {"gpus": self.gpus} if self.gpus else {}
        fixed_two = {"minReplicas": 2, "maxReplicas": 2}
        doc: dict[str, Any] = {
            "apiVersion": "camerafleet.io/v1alpha1",
            "kind": "CameraFleet",
            "metadata": {"name": f"bench-{phase}"},
            "spec": {
                "cameras": [
                    {
                        "id": str(i),
                        "source": str(self.clips[(i - 1) % len(self.clips)]),
                        "inferenceFps": round(camera_fps(i) if camera_fps else fps, 4),
                        "enabled": enabled(i),
                    }
                    for i in range(1, cameras + 1)
                ],
                "models": [
                    {
                        "name": "faces",
                        "type": "face",
                        "modelUri": str(self.models / "centerface.onnx"),
                        "face": {"inputWidth": 640, "inputHeight": 384},
                        "batching": {"maxBatchSize": 8, "batchWaitTimeoutMs": 20},
                        "autoscaling": autoscaling or fixed_two,
                        "resources": {"cpus": 0.5, **gpu},
                    },
                    {
                        "name": "health",
                        "type": "camera-health",
                        "batching": {"maxBatchSize": 16, "batchWaitTimeoutMs": 10},
                        "resources": {"cpus": 0.2},
                    },
                ],
                "kafka": {
                    "bootstrapServers": self.bootstrap,
                    "topicPrefix": f"bench_{phase}_camera_",
                    "resultsTopic": "bench_results",
                    "deadLetterTopic": "bench_deadletter",
                    "consumerGroup": f"bench-{phase}",
                    "topicDeletionPolicy": "Delete",
                },
                "bucket": {"uri": "file:///dev/shm/camerafleet/bench-frames", "ttlSeconds": 120},
                # One producer actor, the manifest's default: it carries saturation on this 2-core machine, and a
                # second cost 0.7 CPU-ms more per processed frame there (its runtime, its Kafka clients and its
                # backlog reads; 2026-12-06, two runs of each), with no more frames through.
                "producer": {"actors": 1, "cpusPerActor": 0.2, "admission": {"mode": "backlog" if admission else "off"}},
                "consumer": {
                    "actors": 1,
                    "cpusPerActor": 0.2,
                    "maxBatchFrames": 16,
                    "batchWaitMs": 20,
                    "maxInFlightBatches": 4,
                    "maxFrameAgeMs": max_frame_age_ms,
                },
                "serving": {"appName": APP, "routePrefix": "/bench", "ingressCpus": 0.2},
                "results": {"logDir": str(self.out / "runs" / phase)},
            },
        }
        if design == BASELINE:  # consumers send one frame per request to the baseline's own Serve app
            doc["spec"]["serving"]["url"] = f"http://127.0.0.1:{Settings.from_env().serve_port}{baseline.ROUTE}"
            doc["spec"]["consumer"].update(baseline.CONSUMER)
            doc["spec"]["producer"]["admission"] = {"mode": "off"}  # the original design had no admission either
        return doc

    def write(self, phase: str, manifest: dict[str, Any]) -> Path:
        path = self.out / "phases" / phase / "fleet.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(manifest, sort_keys=False))
        return path

    async def run(
        self,
        phase: str,
        manifest: dict[str, Any],
        seconds: float,
        warmup_s: float,
        during: Callable[[FleetRunner, Path], Awaitable[dict[str, Any]]] | None = None,
        sample_interval_s: float | None = None,
    ) -> PhaseResult:
        await settle(self.settle_max_s)
        path = self.write(phase, manifest)
        cams = manifest["spec"]["cameras"]
        offered = sum(c["inferenceFps"] for c in cams if c["enabled"])
        design = BASELINE if manifest["spec"]["serving"].get("url") else BATCHED
        print(
            f"\n== {phase}: {len(cams)} cameras, {offered:.1f} frames/s offered, {design}, {seconds:.0f} s ==", file=sys.stderr, flush=True
        )
        fleet = load_manifest(path)
        t_enter = time.time()
        if design == BASELINE:
            baseline.deploy(fleet.spec)
        # The runner watches at its default interval (2 s), as `camerafleet run` does: at 1 s its polls of the producers
        # cost the driver and producers 0.7 CPU-ms more per processed frame at saturation (2026-12-06, one pair).
        runner = FleetRunner(fleet, RunOptions(manifest=path, duration_s=seconds, progress_interval_s=5, drain_timeout_s=90))
        try:
            async with runner:
                cpu0, prof0 = self.probe.cpu_totals(), read_profiles(self.profile_dir)
                series = TimeSeries(
                    self.probe,
                    runner,
                    baseline.APP if design == BASELINE else APP,
                    sample_interval_s or self.sample_interval_s,
                    autoscaled=any(m.autoscaling.min_replicas < m.autoscaling.max_replicas for m in fleet.spec.models),
                )
                series.start()
                t_start = time.time()
                loop = asyncio.create_task(runner.run_until_stopped())
                notes = await during(runner, path) if during else {}
                await loop
                t_end = time.time()
        finally:
            if design == BASELINE:
                baseline.remove()
        assert runner.summary is not None
        await asyncio.sleep(1.5)  # let the last profile flush land
        rows = await series.stop()
        print(
            f"{phase}: started in {t_start - t_enter:.0f} s, ran {t_end - t_start:.0f} s (drain included), stopped in "
            f"{time.time() - t_end:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        cpu1, prof1 = self.probe.cpu_totals(), read_profiles(self.profile_dir)
        self.all_series.extend({**r, "phase": phase} for r in rows)
        records = [orjson.loads(line) for line in runner.results_log.read_bytes().splitlines()] if runner.results_log.exists() else []
        records = [r for r in records if r.get("epochMs") == runner.epoch_ms]
        return PhaseResult(
            name=phase,
            cameras=len(cams),
            offered_fps=offered,
            design=design,
            t_start=t_start,
            t_end=t_end,
            warmup_s=warmup_s,
            summary=runner.summary,
            records=records,
            series=rows,
            cpu_s=cpu_by_component(cpu0, cpu1),
            stages=stage_cpu(prof0, prof1),
            notes=notes,
        )
