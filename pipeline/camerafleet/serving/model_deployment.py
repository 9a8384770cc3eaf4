"""One Serve deployment per model: dynamic batching with `@serve.batch`, inference in a worker thread
so the replica keeps gathering the next batch while one runs."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
from ray import serve

from camerafleet import metrics
from camerafleet.manifest import ModelSpec

log = logging.getLogger("camerafleet.serving")


@serve.deployment
class ModelDeployment:
    def __init__(self, model_spec_json: str):
        from camerafleet.models.registry import create_model

        self.spec = ModelSpec.model_validate_json(model_spec_json)
        self.model = create_model(self.spec)
        self.model.load()
        # One inference before taking traffic: onnxruntime allocates and tunes on its first run, which
        # would otherwise land on the first real frames as latency.
        self.model.infer([np.zeros((720, 1280, 3), dtype=np.uint8)])
        self.infer.set_max_batch_size(self.spec.batching.max_batch_size)
        self.infer.set_batch_wait_timeout_s(self.spec.batching.batch_wait_timeout_ms / 1000)
        log.info("model %s (%s) ready, batch <= %d", self.spec.name, self.spec.type, self.spec.batching.max_batch_size)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.02)
    async def infer(self, images: list[np.ndarray]) -> list[dict]:
        size = len(images)
        metrics.model_batch_size().observe(size, tags={"model": self.spec.name})
        results = await asyncio.to_thread(self.model.infer, images)
        for r in results:
            r["batchSize"] = size
        return results
