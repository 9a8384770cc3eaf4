"""Wire formats between the pipeline's stages: the frame announcement and the per-frame result.

Frame messages travel on the per-camera Kafka topics; results travel on the results topic and the
run's JSON-lines log. They are parsed strictly so a malformed message becomes a failure with a reason,
never a crash.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

SCHEMA_VERSION = 1


class FrameMessage(BaseModel):
    """A sampled frame, written to the bucket and announced on its camera's topic."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    v: Literal[1] = Field(default=SCHEMA_VERSION, description="Schema version of this message.")
    camera_id: str = Field(alias="cameraId", min_length=1, max_length=63, description="Camera that captured the frame.")
    seq: int = Field(ge=0, description="Sampled frame sequence number, per camera and run epoch.")
    epoch_ms: int = Field(alias="epochMs", ge=0, description="Start of the producing run (ms since the Unix epoch).")
    capture_ts_ms: int = Field(alias="captureTsMs", ge=0, description="Capture time in ms since the Unix epoch.")
    uri: str = Field(min_length=1, max_length=2048, description="The frame's JPEG in the bucket.")
    width: int = Field(gt=0, le=16384, description="Frame width in pixels.")
    height: int = Field(gt=0, le=16384, description="Frame height in pixels.")
    producer_error: str | None = Field(
        default=None,
        alias="producerError",
        pattern=r"^[a-z][a-z0-9_]{0,39}$",
        description="Set when the producer sampled the frame but could not store it (e.g. `bucket_unavailable`, "
        "`encode_error`): the frame is still announced, so it ends `failed` with this reason instead of going missing.",
    )

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(by_alias=True, exclude_none=True))


class MessageError(ValueError):
    """A message that cannot be parsed; the text says why."""


def parse_frame_message(raw: bytes | None) -> FrameMessage:
    if not raw:
        raise MessageError("empty message value")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise MessageError(f"not JSON: {err}") from None
    if not isinstance(data, dict):
        raise MessageError(f"expected a JSON object, got {type(data).__name__}")
    try:
        return FrameMessage.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise MessageError(f"invalid frame message: {problems}") from None


FrameOutcome = Literal["processed", "dropped", "failed"]


def result_record(
    msg: FrameMessage, outcome: FrameOutcome, *, models: dict[str, Any] | None, reason: str | None, done_ms: int
) -> dict[str, Any]:
    """One line of the results log and one message of the results topic."""
    record: dict[str, Any] = {
        "cameraId": msg.camera_id,
        "seq": msg.seq,
        "epochMs": msg.epoch_ms,
        "captureTsMs": msg.capture_ts_ms,
        "uri": msg.uri,
        "outcome": outcome,
        "latencyMs": done_ms - msg.capture_ts_ms,
    }
    if reason:
        record["reason"] = reason
    if models is not None:
        record["models"] = models
    return record
