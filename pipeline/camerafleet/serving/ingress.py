"""The ingress deployment: takes a batch of frame references, fetches each frame from the bucket and
decodes it once, sends it to every model at the same time, and returns one result per frame.

Frames older than the fleet's maxFrameAgeMs are dropped (`stale`) here and by the models, so latency
stays bounded under overload. A model call whose replica died mid-request (killed, node lost) is sent once more: Serve routes it to a
live or restarted replica, so a replica crash does not fail the frames it held. The manifest's
`serving.design: per-frame-sequential` keeps the original design alive as the benchmark's baseline.

It serves both transports: `infer` for a DeploymentHandle inside one Ray cluster, and HTTP POST of
`{"frames": [...]}` (one request per batch) for consumers outside it. Every frame comes back either
`ok` with the results of all models, or `failed` with a reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
import ray
from pydantic import ValidationError
from ray import serve
from ray.exceptions import ActorUnavailableError, RayActorError
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request
from starlette.responses import Response

from camerafleet.api.manifest import FleetSpec
from camerafleet.api.messages import FrameMessage
from camerafleet.bucket import BucketError, open_bucket
from camerafleet.imaging import ImageError, decode_jpeg
from camerafleet.profiling import stage
from camerafleet.serving.model_deployment import STALE, SharedFrame

log = logging.getLogger("camerafleet.serving")

MAX_FRAMES_PER_REQUEST = 1024
REPLICA_LOST = (RayActorError, ActorUnavailableError)


def failed(reason: str, message: str) -> dict[str, Any]:
    return {"status": "failed", "reason": reason, "message": message}


def stale(max_age_ms: int) -> dict[str, Any]:
    return {"status": "dropped", "reason": STALE, "message": f"older than maxFrameAgeMs ({max_age_ms} ms) before inference"}


@serve.deployment
class FleetIngress:
    def __init__(self, spec_json: str, models: dict[str, DeploymentHandle]):
        self.spec = FleetSpec.model_validate_json(spec_json)
        self.bucket = open_bucket(self.spec.bucket)
        self.models = models
        self.batch_sizes = {m.name: m.batching.max_batch_size for m in self.spec.models}

    def _reference(self, frame: Any) -> FrameMessage | dict[str, Any]:
        try:
            return FrameMessage.model_validate(frame)
        except ValidationError as err:
            return failed("malformed_request", f"invalid frame reference: {err.errors()[0]['msg']}")

    def _load(self, frame: Any) -> SharedFrame | dict[str, Any]:
        """Fetch, decode and share one frame, or its outcome when that is not possible or too late."""
        msg = self._reference(frame)
        if isinstance(msg, dict):
            return msg
        max_age = self.spec.consumer.max_frame_age_ms
        if time.time() * 1000 - msg.capture_ts_ms > max_age:
            return stale(max_age)
        try:
            with stage("bucket get"):
                data = self.bucket.get(msg.uri)
            with stage("decode"):
                image = decode_jpeg(data, expected_size=(msg.width, msg.height))
        except (BucketError, ImageError) as err:
            return failed(err.reason, str(err))
        return SharedFrame(ref=ray.put(image), deadline_ms=msg.capture_ts_ms + max_age)

    async def _call_model(self, name: str, chunk: list[Any]) -> list[dict[str, Any]]:
        try:
            return await self.models[name].infer.remote(chunk)
        except REPLICA_LOST as err:
            log.warning("model %s: replica lost mid-request (%s); sending the frames again", name, type(err).__name__)
            return await self.models[name].infer.remote(chunk)

    async def _fan_out(self, frames: list[SharedFrame]) -> list[dict[str, Any]]:
        """Every model gets every frame, in chunks of its maxBatchSize, all calls at once."""
        calls, where = [], []
        for name in self.models:
            size = self.batch_sizes[name]
            for start in range(0, len(frames), size):
                calls.append(self._call_model(name, frames[start : start + size]))
                where.append((name, start, min(start + size, len(frames))))
        per_frame: list[dict[str, Any]] = [{} for _ in frames]
        for (name, start, end), answer in zip(where, await asyncio.gather(*calls, return_exceptions=True)):
            for i in range(start, end):
                per_frame[i][name] = answer if isinstance(answer, BaseException) else answer[i - start]
        return [self._merge(models) for models in per_frame]

    def _merge(self, per_model: dict[str, Any]) -> dict[str, Any]:
        errors = {n: r for n, r in per_model.items() if isinstance(r, BaseException)}
        if not errors:
            if any(r.get(STALE) for r in per_model.values()):
                return stale(self.spec.consumer.max_frame_age_ms)
            return {"status": "ok", "models": per_model}
        name, err = next(iter(errors.items()))
        log.warning("model %s failed on a frame: %s", name, err)
        return failed("model_error", f"model {name} failed: {type(err).__name__}: {str(err)[:200]}")

    async def infer(self, frames: list[Any]) -> list[dict[str, Any]]:
        if not isinstance(frames, list):
            raise ValueError("expected a list of frame references")
        if len(frames) > MAX_FRAMES_PER_REQUEST:
            return [failed("batch_too_large", f"{len(frames)} frames in one request; at most {MAX_FRAMES_PER_REQUEST}")] * len(frames)
        if self.spec.serving.design == "per-frame-sequential":
            return [await self._infer_sequentially(f) for f in frames]
        loaded = await asyncio.gather(*(asyncio.to_thread(self._load, f) for f in frames))
        shared = [x for x in loaded if isinstance(x, SharedFrame)]
        answers = iter(await self._fan_out(shared) if shared else [])
        return [next(answers) if isinstance(x, SharedFrame) else x for x in loaded]

    async def _infer_sequentially(self, frame: Any) -> dict[str, Any]:
        """The baseline design: each model in turn, each fetching and decoding the frame itself."""
        msg = self._reference(frame)
        if isinstance(msg, dict):
            return msg
        per_model: dict[str, Any] = {}
        for name in self.models:
            try:
                per_model[name] = (await self._call_model(name, [msg.model_dump(by_alias=True)]))[0]
            except Exception as err:  # noqa: BLE001 - reported per frame like the fan-out path
                per_model[name] = err
        return self._merge(per_model)

    async def __call__(self, request: Request) -> Response:
        if request.method != "POST":
            return Response(b'{"error": "POST {\\"frames\\": [...]}"}', status_code=405, media_type="application/json")
        try:
            body = orjson.loads(await request.body())
            frames = body["frames"]
            if not isinstance(frames, list):
                raise TypeError
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return Response(
                b'{"error": "body must be JSON {\\"frames\\": [frame references]}"}', status_code=400, media_type="application/json"
            )
        results = await self.infer(frames)
        return Response(orjson.dumps({"results": results}), media_type="application/json")
