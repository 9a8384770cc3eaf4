"""One Serve deployment per model: dynamic batching with `@serve.batch`, inference in a worker thread
so the replica keeps gathering the next batch while one runs.

Frames arrive from the ingress as `SharedFrame`s: decoded once into Ray's object store and read here
without a copy, with a deadline (capture time + maxFrameAgeMs) after which the model skips the frame
and answers None (stale), so an overloaded fleet drops old frames instead of queueing them."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray
from ray import serve

from camerafleet import metrics
from camerafleet.api.manifest import BucketSpec, ModelSpec

log = logging.getLogger("camerafleet.serving")

ModelResult = dict[str, Any] | None
"""One frame's result of one model (detections, health, ...); None when the frame was past its deadline."""


@dataclass(frozen=True)
class SharedFrame:
    """A decoded frame put in the object store once and sent to every model by reference."""

    ref: ray.ObjectRef  # inside a dataclass, so Ray passes the reference instead of resolving it in transit
    deadline_ms: int


@serve.deployment
class ModelDeployment:
    def __init__(self, model_spec_json: str, bucket_spec_json: str):
        from camerafleet.models.registry import create_model

        self.spec = ModelSpec.model_validate_json(model_spec_json)
        self.model = create_model(self.spec)
        self.model.load(BucketSpec.model_validate_json(bucket_spec_json))  # s3:// model files come from the fleet's store
        # One inference before taking traffic: onnxruntime allocates and tunes on its first run, which
        # would otherwise land on the first real frames as latency.
        self.model.infer([np.zeros((720, 1280, 3), dtype=np.uint8)])
        self.infer.set_max_batch_size(self.spec.batching.max_batch_size)
        self.infer.set_batch_wait_timeout_s(self.spec.batching.batch_wait_timeout_ms / 1000)
        log.info("model %s (%s) ready, batch <= %d", self.spec.name, self.spec.type, self.spec.batching.max_batch_size)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.02)
    async def infer(self, requests: list[list[SharedFrame]]) -> list[list[ModelResult]]:
        """Each request is a chunk of up to maxBatchSize frames (one call per chunk, not per frame, keeps
        Serve's per-call cost off every frame); chunks gathered together run in batches of maxBatchSize."""
        frames = [item for chunk in requests for item in chunk]
        results = await asyncio.to_thread(self._infer_all, frames)
        out, start = [], 0
        for chunk in requests:
            out.append(results[start : start + len(chunk)])
            start += len(chunk)
        return out

    def _infer_all(self, frames: list[SharedFrame]) -> list[ModelResult]:
        size = self.spec.batching.max_batch_size
        results: list[ModelResult] = []
        for i in range(0, len(frames), size):
            batch = frames[i : i + size]
            metrics.model_batch_size().observe(len(batch), tags={"model": self.spec.name})
            for r in self._infer(batch):
                if r is not None:
                    r["batchSize"] = len(batch)
                results.append(r)
        return results

    def _infer(self, items: list[SharedFrame]) -> list[ModelResult]:
        """Run the model on the frames still within their deadline; None for the others."""
        now_ms = time.time() * 1000
        live = [i for i, x in enumerate(items) if x.deadline_ms >= now_ms]
        results: list[ModelResult] = [None] * len(items)
        for i, result in zip(live, self.model.infer([ray.get(items[i].ref) for i in live]), strict=True):
            results[i] = result
        return results
