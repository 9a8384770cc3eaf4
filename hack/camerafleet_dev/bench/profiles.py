"""Benchmark profiles: how long each phase runs and how big it is. `quick` is a few minutes, `full`
gives the numbers we publish, `tiny` only checks that every phase and the report work (used by a test)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class BenchProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Profile name.")
    limit_seconds: float = Field(
        gt=0, description="How long each reading of the no-distribution limit loop runs (before and right after saturation)."
    )
    warmup_seconds: float = Field(ge=0, description="Start of each pipeline phase left out of its rates and latencies.")
    saturation_seconds: float = Field(gt=0, description="Length of the saturation phase and of the old-design phase.")
    load_seconds: float = Field(gt=0, description="Length of each partial-load phase (50% and 80% of saturation).")
    load_cameras: int = Field(ge=1, description="Cameras of the saturation, partial-load and overload phases.")
    fleet_cameras: int = Field(ge=1, description="Cameras of the many-cameras phase (150 in quick and full).")
    fleet_seconds: float = Field(gt=0, description="Length of the many-cameras phase.")
    fleet_load_fraction: float = Field(gt=0, le=1, description="Share of saturation the many-cameras phase offers.")
    overload_seconds: float = Field(gt=0, description="Length of the overload phase (2x saturation).")
    sweep_multiples: tuple[float, ...] = Field(
        default=(0.5, 1.0, 1.5, 2.0, 3.0),
        description="The load sweep: offered load as multiples of saturation (0.5 and 2 are the 50% load and overload phases).",
    )
    step_idle_seconds: float = Field(gt=0, description="Autoscaling phase: light load before the step.")
    step_load_seconds: float = Field(gt=0, description="Autoscaling phase: overload after the step.")
    step_after_seconds: float = Field(gt=0, description="Autoscaling phase: no load after the step, waiting for scale-down.")
    elastic_idle_seconds: float = Field(gt=0, description="Elastic phases: light load (a fifth of saturation) before the step.")
    elastic_load_seconds: float = Field(gt=0, description="Elastic phases: four fifths of saturation, held.")
    elastic_after_seconds: float = Field(gt=0, description="Elastic phases: light load again, waiting for the pools to shrink.")
    sample_interval_seconds: float = Field(
        gt=0,
        description="How often replicas, lag, memory and CPU are sampled. The sampling runs in the bench's own process, "
        "which took 2.5 ms of every processed frame at saturation (a 2-core machine, with the run's driver) at one a second.",
    )
    step_sample_interval_seconds: float = Field(gt=0, description="The same during the autoscaling phase, which times replica changes.")
    variant_seconds: float = Field(gt=0, description="Limit-loop variants (decode scale, engines, INT8): seconds of each.")
    accuracy_frames_per_camera: int = Field(ge=1, description="Limit-loop variants: frames per clip their detections are compared on.")
    live_seconds: float = Field(gt=0, description="Live cameras phase: measured seconds of each cost cell and capacity step.")
    live_streams: tuple[str, ...] = Field(description="Live cameras phase: test streams measured (h264, h265, mjpeg).")
    live_fps: tuple[float, ...] = Field(description="Live cameras phase: inferenceFps values compared.")
    live_capacity: tuple[int, ...] = Field(description="Live cameras phase: camera counts tried on one core, until a slot is missed.")
    skip_phases: tuple[str, ...] = Field(
        default=(),
        description="Pipeline phases not run: in the tiny profile those whose plumbing another phase already runs with other "
        "numbers (each costs ~30 s of deploy, actor start and drain on a 2-core machine); their goals are not judged.",
    )
    settle_max_seconds: float = Field(
        ge=0,
        description="Longest wait before each pipeline phase for the machine to quiet down, so that one phase's leftovers do not "
        "land on the next one's numbers (0: no wait, for the tiny profile, which checks plumbing, not numbers; on a machine "
        "with other work on it the wait always runs to this bound).",
    )


PROFILES: dict[str, BenchProfile] = {
    p.name: p
    for p in (
        BenchProfile(
            name="tiny",
            # Each pipeline phase costs ~18 s of deploy, actor start and drain on a 2-core machine whatever its length:
            # seconds of frames beyond these only add time, not plumbing.
            limit_seconds=3,
            warmup_seconds=1,
            saturation_seconds=6,
            load_seconds=4,
            load_cameras=2,
            fleet_cameras=12,
            fleet_seconds=6,
            fleet_load_fraction=0.5,
            overload_seconds=5,
            # The sweep's own phases add nothing to the plumbing the 50% load and the overload check.
            sweep_multiples=(0.5, 2.0),
            step_idle_seconds=3,
            step_load_seconds=6,
            step_after_seconds=6,
            elastic_idle_seconds=4,
            elastic_load_seconds=10,
            elastic_after_seconds=8,
            sample_interval_seconds=1.0,
            step_sample_interval_seconds=0.5,
            variant_seconds=2,
            accuracy_frames_per_camera=8,
            live_seconds=3,
            live_streams=("h264",),
            live_fps=(1.0,),
            live_capacity=(2,),
            skip_phases=("load_80", "old_design_load_50", "overload_no_admission"),
            settle_max_seconds=0,
        ),
        BenchProfile(
            name="quick",
            limit_seconds=15,
            warmup_seconds=8,
            saturation_seconds=40,
            load_seconds=30,
            load_cameras=4,
            fleet_cameras=150,
            fleet_seconds=60,
            fleet_load_fraction=0.5,
            overload_seconds=30,
            step_idle_seconds=10,
            step_load_seconds=25,
            step_after_seconds=25,
            elastic_idle_seconds=20,
            elastic_load_seconds=100,
            elastic_after_seconds=80,
            sample_interval_seconds=2.0,
            step_sample_interval_seconds=0.5,
            variant_seconds=8,
            accuracy_frames_per_camera=30,
            live_seconds=10,
            live_streams=("h264", "h265", "mjpeg"),
            live_fps=(1.0, 5.0, 15.0),
            live_capacity=(4, 8, 16, 32),
            settle_max_seconds=30,
        ),
        BenchProfile(
            name="full",
            limit_seconds=30,
            warmup_seconds=15,
            saturation_seconds=90,
            load_seconds=60,
            load_cameras=8,
            fleet_cameras=150,
            fleet_seconds=180,
            fleet_load_fraction=0.5,
            overload_seconds=60,
            step_idle_seconds=20,
            step_load_seconds=40,
            step_after_seconds=40,
            elastic_idle_seconds=30,
            elastic_load_seconds=420,
            elastic_after_seconds=120,
            sample_interval_seconds=2.0,
            step_sample_interval_seconds=0.5,
            variant_seconds=20,
            accuracy_frames_per_camera=60,
            live_seconds=20,
            live_streams=("h264", "h265", "mjpeg"),
            live_fps=(1.0, 5.0, 15.0),
            live_capacity=(4, 8, 16, 32, 64, 128),
            settle_max_seconds=30,
        ),
    )
}
