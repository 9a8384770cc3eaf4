"""The ingress deployment: takes a batch of frame references, fetches each frame from the bucket and
decodes it once (at the smallest DCT scale that still covers every model's input), sends it to every
model at the same time, and returns one `InferenceReply` per frame.

Frames older than the fleet's maxFrameAgeMs are dropped (`stale`) here and by the models, so latency
stays bounded under overload. A model call whose replica died mid-request (killed, node lost) is sent
once more: Serve routes it to a live or restarted replica, so a replica crash does not fail the frames
it held.

It serves both transports: `infer` for a DeploymentHandle inside one Ray cluster, and HTTP POST of
`{"frames": [...]}` (one request per batch) for consumers outside it. Every frame comes back either
processed with the results of all models, or dropped or failed with a reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
import ray
from pydantic import ValidationError
from ray import serve
from ray.exceptions import ActorUnavailableError, RayActorError
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request
from starlette.responses import Response

from camerafleet.api.manifest import ServingAppSpec
from camerafleet.api.messages import FrameMessage, InferenceReply, past
from camerafleet.api.outcomes import Reason
from camerafleet.bucket import BucketError, open_bucket
from camerafleet.imaging import ImageError, decode_jpeg
from camerafleet.models.base import FrameSize, decode_cover
from camerafleet.models.registry import create_model
from camerafleet.profiling import stage
from camerafleet.serving.model_deployment import ModelResult, SharedFrame

log = logging.getLogger("camerafleet.serving")

MAX_FRAMES_PER_REQUEST = 1024
REPLICA_LOST = (RayActorError, ActorUnavailableError)


def load_frame(
    frame: Any, bucket: Any, max_age_ms: int, cover: Callable[[int, int], FrameSize | None] | None = None
) -> tuple[FrameMessage, Any] | InferenceReply:
    """Validate a frame reference, refuse it when stale, fetch and decode it: (message, BGR image), or
    the frame's reply when that is not possible or too late. `cover(width, height)` is the smallest image
    the models need from a frame of that size (None: full size); the JPEG is decoded at the smallest DCT
    scale that still covers it, so the image may be smaller than the message's width x height."""
    try:
        msg = FrameMessage.model_validate(frame)
    except ValidationError as err:
        return InferenceReply.ended(Reason.MALFORMED_REQUEST, f"invalid frame reference: {err.errors()[0]['msg']}")
    if past(msg.deadline_ms(max_age_ms), time.time() * 1000):
        return InferenceReply.ended(Reason.STALE, f"older than maxFrameAgeMs ({max_age_ms} ms) before inference")
    try:
        with stage("bucket get"):
            data = bucket.get(msg.uri)
        with stage("decode"):
            target = cover(msg.width, msg.height) if cover is not None else None
            return msg, decode_jpeg(data, expected_size=(msg.width, msg.height), cover=target)
    except (BucketError, ImageError) as err:
        return InferenceReply.ended(err.reason, str(err))


@serve.deployment
class FleetIngress:
    def __init__(self, app_json: str, models: dict[str, DeploymentHandle]):
        self.app = ServingAppSpec.model_validate_json(app_json)
        self.bucket = open_bucket(self.app.bucket)
        self.models = models
        self.max_frame_age_ms = self.app.max_frame_age_ms
        self.batch_sizes = {m.name: m.batching.max_batch_size for m in self.app.models}
        self.unloaded_models = [create_model(m) for m in self.app.models]  # asked what size they need, never run here
        self.covers: dict[tuple[int, int], FrameSize | None] = {}

    def reconfigure(self, config: dict[str, Any]) -> None:
        """The tuned settings (`ingress_user_config`), applied to running replicas without a restart."""
        self.max_frame_age_ms = int(config["maxFrameAgeMs"])
        self.batch_sizes = {name: int(size) for name, size in config["batchSizes"].items()}

    def _load(self, frame: Any) -> tuple[FrameMessage, Any] | InferenceReply:
        return load_frame(frame, self.bucket, self.max_frame_age_ms, self._decode_cover)

    def _share(self, loaded: list[tuple[FrameMessage, Any]]) -> list[SharedFrame]:
        """Decoded frames into the object store in pieces of the smallest model batch, one object per piece.

        Every object costs a round of bookkeeping in the raylet, in this owner and in each model replica that
        borrows it (2 models: 3 processes), which one object per frame paid 16 times a request; and a piece
        no larger than any model's chunk means a replica on another node pulls only the frames it runs."""
        piece = min(self.batch_sizes.values())
        shared: list[SharedFrame] = []
        for start in range(0, len(loaded), piece):
            part = loaded[start : start + piece]
            ref = ray.put([image for _, image in part])
            shared.extend(
                SharedFrame(ref, i, msg.deadline_ms(self.max_frame_age_ms), msg.width, msg.height) for i, (msg, _) in enumerate(part)
            )
        return shared

    def _decode_cover(self, width: int, height: int) -> FrameSize | None:
        """What a frame of width x height must be decoded to for every model, worked out once per resolution."""
        if (width, height) not in self.covers:
            if len(self.covers) >= 256:  # resolutions come from frame messages: bounded however many there are
                self.covers.clear()
            self.covers[width, height] = decode_cover(self.unloaded_models, width, height)
        return self.covers[width, height]

    async def _call_model(self, name: str, chunk: list[SharedFrame]) -> list[ModelResult]:
        try:
            return await self.models[name].infer.remote(chunk)
        except REPLICA_LOST as err:
            log.warning("model %s: replica lost mid-request (%s); sending the frames again", name, type(err).__name__)
            return await self.models[name].infer.remote(chunk)

    async def _fan_out(self, frames: list[SharedFrame]) -> list[InferenceReply]:
        """Every model gets every frame, in chunks of its maxBatchSize, all calls at once."""
        calls, where = [], []
        for name in self.models:
            size = self.batch_sizes[name]
            for start in range(0, len(frames), size):
                calls.append(self._call_model(name, frames[start : start + size]))
                where.append((name, start, min(start + size, len(frames))))
        per_frame: list[dict[str, ModelResult | BaseException]] = [{} for _ in frames]
        for (name, start, end), answer in zip(where, await asyncio.gather(*calls, return_exceptions=True), strict=True):
            for i in range(start, end):
                per_frame[i][name] = answer if isinstance(answer, BaseException) else answer[i - start]
        return [self._merge(models) for models in per_frame]

    def _merge(self, per_model: dict[str, ModelResult | BaseException]) -> InferenceReply:
        results: dict[str, dict[str, Any]] = {}
        for name, result in per_model.items():
            if isinstance(result, BaseException):
                log.warning("model %s failed on a frame: %s", name, result)
                return InferenceReply.ended(Reason.MODEL_ERROR, f"model {name} failed: {type(result).__name__}: {str(result)[:200]}")
            if result is None:
                return InferenceReply.ended(Reason.STALE, f"older than maxFrameAgeMs ({self.max_frame_age_ms} ms) when batched")
            results[name] = result
        return InferenceReply.processed(results)

    async def infer(self, frames: list[Any]) -> list[InferenceReply]:
        if not isinstance(frames, list):
            raise ValueError("expected a list of frame references")
        if len(frames) > MAX_FRAMES_PER_REQUEST:
            reply = InferenceReply.ended(Reason.BATCH_TOO_LARGE, f"{len(frames)} frames in one request; at most {MAX_FRAMES_PER_REQUEST}")
            return [reply] * len(frames)
        loaded = await asyncio.gather(*(asyncio.to_thread(self._load, f) for f in frames))
        shared = await asyncio.to_thread(self._share, [x for x in loaded if not isinstance(x, InferenceReply)])
        answers = iter(await self._fan_out(shared) if shared else [])
        return [x if isinstance(x, InferenceReply) else next(answers) for x in loaded]

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
        replies = await self.infer(frames)
        return Response(
            orjson.dumps({"results": [r.model_dump(mode="json", exclude_none=True) for r in replies]}), media_type="application/json"
        )
