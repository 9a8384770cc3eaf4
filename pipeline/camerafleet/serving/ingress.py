"""The ingress deployment: takes a batch of frame references, fetches each frame from the bucket once,
reads its JPEG header (size as announced, not a decompression bomb), shares the JPEG bytes and sends them to
every model at the same time, and returns one `InferenceReply` per frame. Each model decodes the JPEG at the
smallest DCT scale that still covers its own input (`model_deployment.py`).

Why the models decode and not the ingress: a decoded 1280x720 frame is 2.8 MB against 120 KB of JPEG, so a
model replica on another node pulls 23 times fewer bytes, and the object store holds 23 times less per frame in
flight. On one node it costs the same CPU (bench saturation phase, 2026-12-06: 68.5 CPU-ms a frame before, 68.4
and 70.0 after): the ingress's share of decoded frames cost it 0.9 ms a frame (object-store memory faulted in
afresh), and the camera-health model's second decode, at 1/4 scale straight to its 320x180 input (1.4 ms),
spares it the resize of the full frame (1.2 ms). The ingress's own CPU fell from 5.9 to 2.4 ms a frame.

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
from camerafleet.imaging import ImageError, check_jpeg
from camerafleet.profiling import stage
from camerafleet.serving.model_deployment import FrameFailure, ModelResult, SharedFrame

log = logging.getLogger("camerafleet.serving")

MAX_FRAMES_PER_REQUEST = 1024
REPLICA_LOST = (RayActorError, ActorUnavailableError)


def load_frame(frame: Any, bucket: Any, max_age_ms: int) -> tuple[FrameMessage, bytes] | InferenceReply:
    """Validate a frame reference, refuse it when stale, fetch it and read its JPEG header: (message, JPEG), or
    the frame's reply when that is not possible or too late. The image itself is decoded by each model."""
    try:
        msg = FrameMessage.model_validate(frame)
    except ValidationError as err:
        return InferenceReply.ended(Reason.MALFORMED_REQUEST, f"invalid frame reference: {err.errors()[0]['msg']}")
    if past(msg.deadline_ms(max_age_ms), time.time() * 1000):
        return InferenceReply.ended(Reason.STALE, f"older than maxFrameAgeMs ({max_age_ms} ms) before inference")
    try:
        with stage("bucket get"):
            data = bucket.get(msg.uri)
        check_jpeg(data, expected_size=(msg.width, msg.height))
        return msg, data
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

    def reconfigure(self, config: dict[str, Any]) -> None:
        """The tuned settings (`ingress_user_config`), applied to running replicas without a restart."""
        self.max_frame_age_ms = int(config["maxFrameAgeMs"])
        self.batch_sizes = {name: int(size) for name, size in config["batchSizes"].items()}

    def _load(self, frame: Any) -> tuple[FrameMessage, bytes] | InferenceReply:
        return load_frame(frame, self.bucket, self.max_frame_age_ms)

    def _share(self, loaded: list[tuple[FrameMessage, bytes]]) -> list[SharedFrame]:
        """The frames' JPEGs into the object store in pieces of the smallest model batch, one object per piece.

        Every object costs a round of bookkeeping in the raylet, in this owner and in each model replica that
        borrows it (2 models: 3 processes), which one object per frame paid 16 times a request; and a piece
        no larger than any model's chunk means a replica on another node pulls only the frames it runs."""
        piece = min(self.batch_sizes.values())
        shared: list[SharedFrame] = []
        for start in range(0, len(loaded), piece):
            part = loaded[start : start + piece]
            ref = ray.put([data for _, data in part])
            shared.extend(
                SharedFrame(ref, i, msg.deadline_ms(self.max_frame_age_ms), msg.width, msg.height) for i, (msg, _) in enumerate(part)
            )
        return shared

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
            if isinstance(result, FrameFailure):
                return InferenceReply.ended(result.reason, f"model {name}: {result.message}")
            results[name] = result
        return InferenceReply.processed(results)

    async def infer(self, frames: list[Any]) -> list[InferenceReply]:
        if not isinstance(frames, list):
            raise ValueError("expected a list of frame references")
        if len(frames) > MAX_FRAMES_PER_REQUEST:
            reply = InferenceReply.ended(Reason.BATCH_TOO_LARGE, f"{len(frames)} frames in one request; at most {MAX_FRAMES_PER_REQUEST}")
            return [reply] * len(frames)
        loaded = await asyncio.gather(*(asyncio.to_thread(self._load, f) for f in frames))  # S3 reads in parallel
        shared = self._share([x for x in loaded if not isinstance(x, InferenceReply)])
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
