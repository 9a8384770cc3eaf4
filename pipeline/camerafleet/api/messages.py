"""Wire formats between the pipeline's stages: the frame announcement, the inference service's reply
per frame, and the per-frame result.

Frame messages travel on the per-camera Kafka topics; replies come back from the Serve ingress (by
DeploymentHandle or HTTP JSON); results travel on the results topic, the dead-letter topic and the
run's JSON-lines log. Frame messages are parsed strictly so a malformed one becomes a failure with a
reason, never a crash.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from camerafleet.api.outcomes import Outcome, Reason

SCHEMA_VERSION: Literal[1] = 1
# What a dead-letter record keeps of a message it could not read: far below Kafka's 1 MB default limit, with
# the rest of the record (a few hundred bytes) and UTF-8 replacements (up to 3 bytes each) on top.
MAX_DEAD_LETTER_VALUE_BYTES = 64 * 1024


class FrameMessage(BaseModel):
    """A sampled frame, written to the bucket and announced on its camera's topic."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True, populate_by_name=True)

    v: Literal[1] = Field(default=SCHEMA_VERSION, description="Schema version of this message.")
    camera_id: str = Field(alias="cameraId", min_length=1, max_length=63, description="Camera that captured the frame.")
    seq: int = Field(ge=0, description="Sampled frame sequence number, per camera and run epoch.")
    epoch_ms: int = Field(alias="epochMs", ge=0, description="Start of the producing run (ms since the Unix epoch).")
    capture_ts_ms: int = Field(alias="captureTsMs", ge=0, description="Capture time in ms since the Unix epoch.")
    uri: str = Field(min_length=1, max_length=2048, description="The frame's JPEG in the bucket.")
    width: int = Field(gt=0, le=16384, description="Frame width in pixels.")
    height: int = Field(gt=0, le=16384, description="Frame height in pixels.")
    producer_error: Reason | None = Field(
        default=None,
        alias="producerError",
        strict=False,  # a reason arrives as its string value, from JSON or a plain dict
        description="Set when the producer sampled the frame but could not store it (e.g. `bucket_unavailable`, "
        "`encode_error`): the frame is still announced, so it ends `failed` with this reason instead of going missing.",
    )

    def deadline_ms(self, max_age_ms: int) -> int:
        """The last instant the frame may still be worked on (capture time + maxFrameAgeMs); after it the frame
        is stale, for the consumer, the ingress and the models alike (see `past`)."""
        return self.capture_ts_ms + max_age_ms

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()

    def reference(self) -> dict[str, Any]:
        """The message as the inference service takes it (JSON types only)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def past(deadline_ms: float, now_ms: float) -> bool:
    """Whether a frame's deadline has passed: the one rule that makes a frame `stale`."""
    return now_ms > deadline_ms


class MessageError(ValueError):
    """A message that cannot be parsed; the text says why."""


def parse_frame_message(raw: bytes | None) -> FrameMessage:
    if not raw:
        raise MessageError("empty message value")
    try:
        return FrameMessage.model_validate_json(raw)
    except ValidationError as err:
        errors = err.errors()
        if errors[0]["type"] == "json_invalid":
            raise MessageError(f"not JSON: {errors[0]['msg']}") from None
        if errors[0]["type"] == "model_type":
            raise MessageError("expected a JSON object with the frame's fields") from None
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
        raise MessageError(f"invalid frame message: {problems}") from None


class InferenceReply(BaseModel):
    """The inference service's answer for one frame: processed with every model's result, or dropped or
    failed with a reason. Consumers turn it into the frame's result record."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    outcome: Outcome = Field(description="What became of the frame.")
    reason: Reason | None = Field(default=None, description="Why it was dropped or failed; empty when processed.")
    message: str = Field(default="", max_length=1000, description="What went wrong, for people.")
    models: dict[str, dict[str, Any]] | None = Field(default=None, description="Each model's result, by model name, when processed.")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.outcome == Outcome.PROCESSED:
            if self.models is None or self.reason is not None:
                raise ValueError("a processed frame carries the models' results and no reason")
        elif self.reason is None or self.reason.outcome != self.outcome:
            raise ValueError(f"a {self.outcome} frame needs a reason of that outcome, got {self.reason!r}")
        return self

    @classmethod
    def processed(cls, models: dict[str, dict[str, Any]]) -> InferenceReply:
        return cls(outcome=Outcome.PROCESSED, models=models)

    @classmethod
    def ended(cls, reason: Reason, message: str) -> InferenceReply:
        """Dropped or failed, as the reason says."""
        return cls(outcome=reason.outcome, reason=reason, message=message[:1000])


class KafkaPosition(BaseModel):
    """Where a frame's announcement sits in Kafka: the run's ledger identifies messages by it."""

    model_config = ConfigDict(frozen=True)

    topic: str
    partition: int
    offset: int


class ResultRecord(BaseModel):
    """One frame's outcome: a line of the results log, and a message of the results topic (processed) or
    of the dead-letter topic (failed)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    camera_id: str = Field(alias="cameraId", description="The frame's camera (from the topic when the message could not be read).")
    seq: int | None = Field(default=None, description="Sequence number; empty when the message could not be read.")
    epoch_ms: int | None = Field(default=None, alias="epochMs", description="Start of the producing run (ms since the Unix epoch).")
    capture_ts_ms: int | None = Field(default=None, alias="captureTsMs", description="Capture time (ms since the Unix epoch).")
    uri: str | None = Field(default=None, description="The frame in the bucket.")
    width: int | None = Field(default=None, description="Frame width in pixels (boxes and landmarks are in frame pixels).")
    height: int | None = Field(default=None, description="Frame height in pixels.")
    outcome: Outcome = Field(description="processed, dropped or failed.")
    reason: Reason | None = Field(default=None, description="Why it was dropped or failed.")
    message: str | None = Field(default=None, description="What went wrong, for people.")
    latency_ms: int | None = Field(default=None, alias="latencyMs", description="Capture to result written, in ms.")
    models: dict[str, dict[str, Any]] | None = Field(default=None, description="Each model's result, when processed.")
    topic: str = Field(description="Kafka topic of the frame's announcement.")
    partition: int = Field(description="Its partition.")
    offset: int = Field(description="Its offset.")
    value: str | None = Field(
        default=None,
        description="The raw message (its first 64 KiB, as UTF-8 with replacements), on the dead-letter topic, when it could not be read.",
    )
    value_bytes: int | None = Field(
        default=None, alias="valueBytes", description="The raw message's whole size, when it could not be read."
    )

    @classmethod
    def of_frame(
        cls,
        msg: FrameMessage,
        at: KafkaPosition,
        done_ms: int,
        *,
        reply: InferenceReply | None = None,
        reason: Reason | None = None,
        message: str = "",
    ) -> ResultRecord:
        """A frame's outcome: from the inference service's reply, or from a `reason` decided before inference."""
        if reply is None:
            assert reason is not None, "a frame without a reply ends with a reason"
            reply = InferenceReply.ended(reason, message)
        return cls(
            camera_id=msg.camera_id,
            seq=msg.seq,
            epoch_ms=msg.epoch_ms,
            capture_ts_ms=msg.capture_ts_ms,
            uri=msg.uri,
            width=msg.width,
            height=msg.height,
            outcome=reply.outcome,
            reason=reply.reason,
            message=reply.message[:500] or None,
            latency_ms=done_ms - msg.capture_ts_ms,
            models=reply.models,
            **at.model_dump(),
        )

    @classmethod
    def unreadable(cls, camera_id: str, at: KafkaPosition, error: str, raw: bytes | None) -> ResultRecord:
        """A message that is not a frame announcement at all. The dead-letter record keeps the start of it: a
        whole message of a few hundred KB would make a record over Kafka's size limit, which no retry sends."""
        raw = raw or b""
        return cls(
            camera_id=camera_id,
            outcome=Outcome.FAILED,
            reason=Reason.MALFORMED_MESSAGE,
            message=error[:500],
            value=raw[:MAX_DEAD_LETTER_VALUE_BYTES].decode("utf-8", "replace") or None,
            value_bytes=len(raw),
            **at.model_dump(),
        )

    @classmethod
    def expired(cls, camera_id: str, at: KafkaPosition) -> ResultRecord:
        """An announcement the topic's retention deleted before it was read: its position is all that is left."""
        return cls(camera_id=camera_id, outcome=Outcome.DROPPED, reason=Reason.EXPIRED_UNREAD, **at.model_dump())

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
