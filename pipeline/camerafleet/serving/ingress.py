"""The ingress deployment: takes a batch of frame references, fetches each frame from the bucket and
decodes it once, sends it to every model at the same time, and returns one result per frame.

It serves both transports: `infer` for a DeploymentHandle inside one Ray cluster, and HTTP POST of
`{"frames": [...]}` (one request per batch) for consumers outside it. Every frame comes back either
`ok` with the results of all models, or `failed` with a reason.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from pydantic import ValidationError
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request
from starlette.responses import Response

from camerafleet.bucket import BucketError, open_bucket
from camerafleet.imaging import ImageError, decode_jpeg
from camerafleet.manifest import FleetSpec
from camerafleet.messages import FrameMessage

log = logging.getLogger("camerafleet.serving")

MAX_FRAMES_PER_REQUEST = 1024


def failed(reason: str, message: str) -> dict[str, Any]:
    return {"status": "failed", "reason": reason, "message": message}


@serve.deployment
class FleetIngress:
    def __init__(self, spec_json: str, models: dict[str, DeploymentHandle]):
        self.spec = FleetSpec.model_validate_json(spec_json)
        self.bucket = open_bucket(self.spec.bucket)
        self.models = models

    def _load(self, frame: Any):
        try:
            msg = FrameMessage.model_validate(frame)
        except ValidationError as err:
            return failed("malformed_request", f"invalid frame reference: {err.errors()[0]['msg']}")
        try:
            return decode_jpeg(self.bucket.get(msg.uri))
        except (BucketError, ImageError) as err:
            return failed(err.reason, str(err))

    async def infer(self, frames: list[Any]) -> list[dict[str, Any]]:
        if not isinstance(frames, list):
            raise ValueError("expected a list of frame references")
        if len(frames) > MAX_FRAMES_PER_REQUEST:
            return [failed("batch_too_large", f"{len(frames)} frames in one request; at most {MAX_FRAMES_PER_REQUEST}")] * len(frames)
        images = await asyncio.gather(*(asyncio.to_thread(self._load, f) for f in frames))
        names = list(self.models)
        calls = [
            [self.models[name].infer.remote(img) for name in names] if not isinstance(img, dict) else None for img in images
        ]
        flat = [c for per_frame in calls if per_frame for c in per_frame]
        outcomes = iter(await asyncio.gather(*flat, return_exceptions=True))
        results: list[dict[str, Any]] = []
        for img, per_frame in zip(images, calls):
            if per_frame is None:
                results.append(img)
                continue
            per_model = dict(zip(names, (next(outcomes) for _ in names)))
            errors = {n: r for n, r in per_model.items() if isinstance(r, BaseException)}
            if errors:
                name, err = next(iter(errors.items()))
                log.warning("model %s failed on a frame: %s", name, err)
                results.append(failed("model_error", f"model {name} failed: {type(err).__name__}: {str(err)[:200]}"))
            else:
                results.append({"status": "ok", "models": per_model})
        return results

    async def __call__(self, request: Request) -> Response:
        if request.method != "POST":
            return Response(b'{"error": "POST {\\"frames\\": [...]}"}', status_code=405, media_type="application/json")
        try:
            body = orjson.loads(await request.body())
            frames = body["frames"]
            if not isinstance(frames, list):
                raise TypeError
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return Response(b'{"error": "body must be JSON {\\"frames\\": [frame references]}"}', status_code=400, media_type="application/json")
        results = await self.infer(frames)
        return Response(orjson.dumps({"results": results}), media_type="application/json")
