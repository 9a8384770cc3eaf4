"""Serve deployment options of a fleet, as plain dicts and without importing Ray: the local runner
passes them to `.options()`, and the Kubernetes operator writes the same values into the RayService's
`serveConfigV2`, so both runtimes deploy identical settings."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from camerafleet.api.manifest import ModelSpec, ServingAppSpec, ServingSpec

APP_IMPORT_PATH = "camerafleet.serving.app:build_app"


# Serve's controller (one per fleet, on the serving head) reconciles every 0.1 s by default. Measured on the
# dev cluster's production layout under the soak's load: 45 CPU-ms a second, 4.5% of a core per fleet, and
# on the benchmark's 2-core machine 3 ms of every processed frame went to Serve's own processes. At 0.5 s a
# replica's start, death or scaling decision is acted on half a second later at most; autoscaling delays are
# timed on the clock, not counted in loop turns, so they are unchanged. Set where Ray starts: the local
# instance's environment, the RayService head's container.
SERVE_CONTROLLER_ENV = {"RAY_SERVE_CONTROL_LOOP_INTERVAL_S": "0.5"}


def default_serve_controller_env(environ: MutableMapping[str, str]) -> None:
    """Put `SERVE_CONTROLLER_ENV` into `environ` (a local instance's, before Ray starts) where it is not set."""
    for name, value in SERVE_CONTROLLER_ENV.items():
        environ.setdefault(name, value)


def deployment_name(model_name: str) -> str:
    """The Serve deployment of a fleet's model."""
    return f"model-{model_name}"


def model_deployment_options(model: ModelSpec) -> dict[str, Any]:
    a, r = model.autoscaling, model.resources
    actor_options: dict[str, Any] = {"num_cpus": r.cpus, "num_gpus": r.gpus}
    if r.memory_bytes:
        actor_options["memory"] = r.memory_bytes
    return {
        "name": deployment_name(model.name),
        "max_ongoing_requests": model.batching.effective_max_ongoing_requests,
        "ray_actor_options": actor_options,
        "autoscaling_config": {
            "min_replicas": a.min_replicas,
            "max_replicas": a.max_replicas,
            "initial_replicas": a.initial_replicas if a.initial_replicas is not None else a.min_replicas,
            "target_ongoing_requests": a.target_ongoing_requests,
            "upscale_delay_s": a.upscale_delay_seconds,
            "downscale_delay_s": a.downscale_delay_seconds,
            "metrics_interval_s": a.metrics_interval_seconds,
            "look_back_period_s": a.look_back_period_seconds,
        },
    }


def ingress_options(s: ServingSpec) -> dict[str, Any]:
    return {
        "name": "ingress",
        "num_replicas": s.ingress_replicas,
        "max_ongoing_requests": s.ingress_max_ongoing_requests,
        "ray_actor_options": {"num_cpus": s.ingress_cpus},
    }


# Serve restarts every replica of every deployment when an application's args change (they are hashed into
# its code version), but hands a deployment's `user_config` to its running replicas' `reconfigure` (a
# "lightweight update"), as it applies `autoscaling_config`, `num_replicas` and `max_ongoing_requests`, and
# `ray_actor_options` restart only that deployment. So the args carry what defines the deployments (the
# models, the bucket) and everything a person tunes goes per deployment: one model's minReplicas or
# batching edited restarts no replica at all.
TUNED_MODEL_FIELDS = {"autoscaling", "batching", "resources"}


def app_args(app: ServingAppSpec) -> dict[str, Any]:
    """A RayService's args for the fleet's Serve app: the spec without what goes per deployment."""
    exclude: Any = {"serving": {"url"}, "max_frame_age_ms": True, "models": {"__all__": TUNED_MODEL_FIELDS}}
    return {"app": app.model_dump(mode="json", by_alias=True, exclude_defaults=True, exclude=exclude)}


def model_user_config(model: ModelSpec) -> dict[str, Any]:
    """What a model's running replicas take without a restart (`ModelDeployment.reconfigure`)."""
    return {
        "maxBatchSize": model.batching.max_batch_size,
        "batchWaitTimeoutMs": model.batching.batch_wait_timeout_ms,
        "maxReplicas": model.autoscaling.max_replicas,
    }


def ingress_user_config(app: ServingAppSpec) -> dict[str, Any]:
    """What the ingress's running replicas take without a restart (`FleetIngress.reconfigure`)."""
    return {"maxFrameAgeMs": app.max_frame_age_ms, "batchSizes": {m.name: m.batching.max_batch_size for m in app.models}}
