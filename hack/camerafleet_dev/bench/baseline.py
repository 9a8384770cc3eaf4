"""The original design, kept by the benchmark as its baseline (it never ships): one HTTP request per
frame, the models called one after another, each model fetching and decoding the frame itself.

The fleet under test is the product's own (producers, Kafka, consumers); only its inference service is
this Serve app instead of the product's, reached at `serving.url` with one frame per consumer batch
(`consumer.maxBatchFrames: 1`). It reuses the product's parts (model classes, bucket, safe decoding)
so the difference measured is the design, not the code.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import orjson
from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request
from starlette.responses import Response

from camerafleet.api.manifest import FleetSpec, ModelSpec
from camerafleet.api.messages import InferenceReply
from camerafleet.api.outcomes import Reason
from camerafleet.api.serve_options import ingress_options, model_deployment_options
from camerafleet.bucket import open_bucket
from camerafleet.imaging import ImageError, decode_jpeg
from camerafleet.serving.ingress import load_frame

APP = "bench-baseline"
ROUTE = "/bench-baseline"
# One frame per request, as many requests at once as the batched design holds frames in flight by default
# (maxInFlightBatches 4 x maxBatchFrames 16).
CONSUMER = {"maxBatchFrames": 1, "maxInFlightBatches": 64}


@serve.deployment
class BaselineModel:
    """A model that fetches and decodes every frame itself, batched like the product's."""

    def __init__(self, model_spec_json: str, fleet_spec_json: str):
        from camerafleet.models.registry import create_model

        spec = ModelSpec.model_validate_json(model_spec_json)
        fleet = FleetSpec.model_validate_json(fleet_spec_json)
        self.name, self.batch = spec.name, spec.batching.max_batch_size
        self.bucket = open_bucket(fleet.bucket)
        self.max_age_ms = fleet.consumer.max_frame_age_ms
        self.model = create_model(spec)
        self.model.load(fleet.bucket)
        self.model.infer([np.zeros((720, 1280, 3), dtype=np.uint8)])
        self.infer.set_max_batch_size(self.batch)
        self.infer.set_batch_wait_timeout_s(spec.batching.batch_wait_timeout_ms / 1000)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.02)
    async def infer(self, frames: list[dict[str, Any]]) -> list[InferenceReply | dict[str, Any]]:
        return await asyncio.to_thread(self._infer, frames)

    def _load(self, frame: dict[str, Any]) -> tuple[Any, np.ndarray] | InferenceReply:
        """Fetch and decode at full size, as the original design did."""
        loaded = load_frame(frame, self.bucket, self.max_age_ms)
        if isinstance(loaded, InferenceReply):
            return loaded
        try:
            return loaded[0], decode_jpeg(loaded[1])
        except ImageError as err:
            return InferenceReply.ended(err.reason, str(err))

    def _infer(self, frames: list[dict[str, Any]]) -> list[InferenceReply | dict[str, Any]]:
        loaded = [self._load(f) for f in frames]
        images = [x[1] for x in loaded if not isinstance(x, InferenceReply)]
        results = iter(self.model.infer(images) if images else [])
        out: list[InferenceReply | dict[str, Any]] = []
        for x in loaded:
            out.append(x if isinstance(x, InferenceReply) else {**next(results), "batchSize": len(images)})
        return out


@serve.deployment
class BaselineIngress:
    """One frame per request; each model in turn."""

    def __init__(self, models: dict[str, DeploymentHandle]):
        self.models = models

    async def _one(self, frame: dict[str, Any]) -> InferenceReply:
        results: dict[str, dict[str, Any]] = {}
        for name, handle in self.models.items():
            try:
                answer = await handle.infer.remote(frame)
            except Exception as err:  # noqa: BLE001 - a failed model call is reported per frame, like the product's ingress does
                return InferenceReply.ended(Reason.MODEL_ERROR, f"model {name} failed: {type(err).__name__}")
            if isinstance(answer, InferenceReply):
                return answer
            results[name] = answer
        return InferenceReply.processed(results)

    async def __call__(self, request: Request) -> Response:
        frames = orjson.loads(await request.body())["frames"]
        replies = [await self._one(f) for f in frames]
        return Response(
            orjson.dumps({"results": [r.model_dump(mode="json", exclude_none=True) for r in replies]}), media_type="application/json"
        )


def baseline_app(spec: FleetSpec) -> Application:
    fleet_json = spec.model_dump_json(by_alias=True)
    model: Any = BaselineModel  # serve.deployment adds `.options`; mypy does not apply class decorators
    ingress: Any = BaselineIngress
    models = {m.name: model.options(**model_deployment_options(m)).bind(m.model_dump_json(by_alias=True), fleet_json) for m in spec.models}
    return ingress.options(**ingress_options(spec.serving)).bind(models)


def deploy(spec: FleetSpec) -> None:
    serve.run(baseline_app(spec), name=APP, route_prefix=ROUTE, logging_config={"enable_access_log": False, "log_level": "WARNING"})


def remove() -> None:
    serve.delete(APP)
