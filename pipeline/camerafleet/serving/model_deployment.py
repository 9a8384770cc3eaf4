"""One Serve deployment per model: dynamic batching with `@serve.batch`, inference in a worker thread
so the replica keeps gathering the next batch while one runs.

Frames arrive decoded from the ingress; in the baseline design (`serving.design: per-frame-sequential`)
they arrive as frame references and each model fetches and decodes them itself."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
from ray import serve

from camerafleet import metrics
from camerafleet.bucket import open_bucket
from camerafleet.imaging import decode_jpeg
from camerafleet.manifest import BucketSpec, ModelSpec
from camerafleet.messages import FrameMessage
from camerafleet.profiling import stage

log = logging.getLogger("camerafleet.serving")


@serve.deployment
class ModelDeployment:
    def __init__(self, model_spec_json: str, bucket_spec_json: str):
        from camerafleet.models.registry import create_model

        self.spec = ModelSpec.model_validate_json(model_spec_json)
        self.bucket = open_bucket(BucketSpec.model_validate_json(bucket_spec_json))
        self.model = create_model(self.spec)
        self.model.load()
        # One inference before taking traffic: onnxruntime allocates and tunes on its first run, which
        # would otherwise land on the first real frames as latency.
        self.model.infer([np.zeros((720, 1280, 3), dtype=np.uint8)])
        self.infer.set_max_batch_size(self.spec.batching.max_batch_size)
        self.infer.set_batch_wait_timeout_s(self.spec.batching.batch_wait_timeout_ms / 1000)
        log.info("model %s (%s) ready, batch <= %d", self.spec.name, self.spec.type, self.spec.batching.max_batch_size)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.02)
    async def infer(self, images: list[np.ndarray | dict]) -> list[dict]:
        size = len(images)
        metrics.model_batch_size().observe(size, tags={"model": self.spec.name})
        results = await asyncio.to_thread(self._infer, images)
        for r in results:
            r["batchSize"] = size
        return results

    def _infer(self, images: list[np.ndarray | dict]) -> list[dict]:
        return self.model.infer([self._fetch(x) if isinstance(x, dict) else x for x in images])

    def _fetch(self, frame: dict) -> np.ndarray:
        with stage("bucket get"):
            data = self.bucket.get(FrameMessage.model_validate(frame).uri)
        with stage("decode"):
            return decode_jpeg(data)
