"""Prometheus metrics of the pipeline, one definition for every process that records them.

Inside Ray actors and Serve replicas metrics go through Ray's metrics API (exported by each node's
metrics agent); the names below are the contract the Grafana dashboard queries.
"""

from __future__ import annotations

from functools import cache

from ray.util import metrics as ray_metrics

LATENCY_BOUNDARIES_MS: list[float] = [10, 25, 50, 100, 200, 400, 800, 1600, 3200, 6400, 12800, 30000]
BATCH_BOUNDARIES: list[float] = [1, 2, 4, 8, 16, 32, 64, 128, 256]


@cache
def frames_produced() -> ray_metrics.Counter:
    return ray_metrics.Counter("camerafleet_frames_produced", "Frames sampled by producers.", tag_keys=("camera",))


@cache
def frames_processed() -> ray_metrics.Counter:
    return ray_metrics.Counter("camerafleet_frames_processed", "Frames whose results were written.", tag_keys=("camera",))


@cache
def frames_dropped() -> ray_metrics.Counter:
    return ray_metrics.Counter("camerafleet_frames_dropped", "Frames dropped on purpose, by reason.", tag_keys=("camera", "reason"))


@cache
def frames_failed() -> ray_metrics.Counter:
    return ray_metrics.Counter("camerafleet_frames_failed", "Frames that failed, by reason.", tag_keys=("camera", "reason"))


@cache
def e2e_latency_ms() -> ray_metrics.Histogram:
    return ray_metrics.Histogram(
        "camerafleet_e2e_latency_ms", "Capture to result written, in ms.", boundaries=LATENCY_BOUNDARIES_MS, tag_keys=("camera",)
    )


@cache
def model_batch_size() -> ray_metrics.Histogram:
    return ray_metrics.Histogram(
        "camerafleet_model_batch_size", "Frames per model batch.", boundaries=BATCH_BOUNDARIES, tag_keys=("model",)
    )


@cache
def consumer_lag() -> ray_metrics.Gauge:
    return ray_metrics.Gauge("camerafleet_consumer_lag", "Messages not yet consumed, per topic partition.", tag_keys=("topic", "partition"))


@cache
def source_problems() -> ray_metrics.Counter:
    return ray_metrics.Counter(
        "camerafleet_source_problems",
        "Times a camera's source went down, by problem (unreachable, auth_failed, stalled, ended, unreadable).",
        tag_keys=("camera", "problem"),
    )


@cache
def source_up() -> ray_metrics.Gauge:
    return ray_metrics.Gauge(
        "camerafleet_source_up", "1 while the camera source delivers frames, 0 while it is reconnecting.", tag_keys=("camera",)
    )


@cache
def slots_shed() -> ray_metrics.Counter:
    return ray_metrics.Counter(
        "camerafleet_slots_shed",
        "Sampling slots not admitted at the source (the pipeline could not process them in time).",
        tag_keys=("camera",),
    )
