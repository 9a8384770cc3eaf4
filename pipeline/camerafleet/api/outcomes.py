"""How a sampled frame can end, and why: the ledger's vocabulary, in one place.

Every sampled frame ends `processed`, `dropped` (on purpose) or `failed`, the last two with a `Reason`.
Stages raise and count reasons from this enum only, the metrics label them with its values, and the
README's table of reasons is generated from it (a test fails when they differ). Slots of a camera's
sampling grid that produced no frame at all are not frames: they are counted as missed, by `MissedReason`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    """The end of a sampled frame."""

    PROCESSED = "processed"
    DROPPED = "dropped"
    FAILED = "failed"


class Stage(StrEnum):
    """Where in the pipeline a reason is decided."""

    PRODUCER = "producer"
    CONSUMER = "consumer"
    INGRESS = "ingress"
    MODEL = "model"


@dataclass(frozen=True)
class _About:
    outcome: Outcome
    stage: Stage
    meaning: str


class Reason(StrEnum):
    """Why a frame was dropped or failed. `outcome`, `stage` and `meaning` say which, where and what it means."""

    STALE = "stale"
    KAFKA_UNAVAILABLE = "kafka_unavailable"
    MALFORMED_MESSAGE = "malformed_message"
    UNKNOWN_CAMERA = "unknown_camera"
    EXPIRED_UNREAD = "expired_unread"
    FRAME_MISSING = "frame_missing"
    FRAME_TOO_LARGE = "frame_too_large"
    URI_OUTSIDE_BUCKET = "uri_outside_bucket"
    DECODE_ERROR = "decode_error"
    IMAGE_TOO_LARGE = "image_too_large"
    SIZE_MISMATCH = "size_mismatch"
    MALFORMED_REQUEST = "malformed_request"
    BATCH_TOO_LARGE = "batch_too_large"
    MODEL_ERROR = "model_error"
    INFERENCE_TIMEOUT = "inference_timeout"
    INFERENCE_UNAVAILABLE = "inference_unavailable"
    BUCKET_UNAVAILABLE = "bucket_unavailable"
    ENCODE_ERROR = "encode_error"
    KAFKA_SEND_FAILED = "kafka_send_failed"

    @property
    def outcome(self) -> Outcome:
        return _ABOUT[self].outcome

    @property
    def stage(self) -> Stage:
        return _ABOUT[self].stage

    @property
    def meaning(self) -> str:
        return _ABOUT[self].meaning


_ABOUT: dict[Reason, _About] = {
    Reason.STALE: _About(
        Outcome.DROPPED,
        Stage.CONSUMER,
        "older than `consumer.maxFrameAgeMs` when consumed, fetched or batched: a real-time system prefers fresh frames to a backlog",
    ),
    Reason.KAFKA_UNAVAILABLE: _About(
        Outcome.DROPPED,
        Stage.PRODUCER,
        "Kafka did not acknowledge while `producer.maxBufferedFrames` frames of the camera already waited (they are retried; "
        "this one is not queued without bound)",
    ),
    Reason.MALFORMED_MESSAGE: _About(Outcome.FAILED, Stage.CONSUMER, "the Kafka message is not a valid frame announcement"),
    Reason.UNKNOWN_CAMERA: _About(
        Outcome.FAILED, Stage.CONSUMER, "the message names a camera that is not in the fleet, or sits on another camera's topic"
    ),
    Reason.EXPIRED_UNREAD: _About(
        Outcome.DROPPED,
        Stage.CONSUMER,
        "the camera topic's retention deleted the announcement before any consumer read it (consumers stopped or behind for "
        "longer than the topic keeps frames): counted by its Kafka position, with nothing else known of the frame",
    ),
    Reason.FRAME_MISSING: _About(Outcome.FAILED, Stage.INGRESS, "the frame is not in the bucket (expired or never written)"),
    Reason.FRAME_TOO_LARGE: _About(Outcome.FAILED, Stage.INGRESS, "the frame object is larger than `bucket.maxFrameBytes`"),
    Reason.URI_OUTSIDE_BUCKET: _About(
        Outcome.FAILED, Stage.INGRESS, "the frame URI escapes the bucket (`../`, an absolute path, another bucket)"
    ),
    Reason.DECODE_ERROR: _About(
        Outcome.FAILED,
        Stage.MODEL,
        "the JPEG is corrupt or truncated (its header is read by the ingress, its body decoded by each model's replica)",
    ),
    Reason.IMAGE_TOO_LARGE: _About(
        Outcome.FAILED, Stage.INGRESS, "the JPEG header declares more pixels than allowed (a decompression bomb), refused before decoding"
    ),
    Reason.SIZE_MISMATCH: _About(
        Outcome.FAILED, Stage.INGRESS, "the JPEG's size differs from the size its frame message announces, refused before decoding"
    ),
    Reason.MALFORMED_REQUEST: _About(
        Outcome.FAILED, Stage.INGRESS, "a frame reference sent to the inference service is not a valid frame message"
    ),
    Reason.BATCH_TOO_LARGE: _About(Outcome.FAILED, Stage.INGRESS, "one request to the inference service held more frames than it accepts"),
    Reason.MODEL_ERROR: _About(Outcome.FAILED, Stage.MODEL, "a model raised on the frame"),
    Reason.INFERENCE_TIMEOUT: _About(
        Outcome.FAILED, Stage.CONSUMER, "no answer from the inference service within `consumer.inferenceTimeoutSeconds`"
    ),
    Reason.INFERENCE_UNAVAILABLE: _About(Outcome.FAILED, Stage.CONSUMER, "the inference service could not be reached, after retries"),
    Reason.BUCKET_UNAVAILABLE: _About(
        Outcome.FAILED, Stage.PRODUCER, "the bucket did not take or give the frame (storage down or refusing)"
    ),
    Reason.ENCODE_ERROR: _About(Outcome.FAILED, Stage.PRODUCER, "the frame could not be JPEG-encoded"),
    Reason.KAFKA_SEND_FAILED: _About(
        Outcome.FAILED, Stage.PRODUCER, "Kafka refused the frame's announcement for good (e.g. too large); retrying would not help"
    ),
}


class MissedReason(StrEnum):
    """Why a slot of a camera's sampling grid produced no frame."""

    SKIPPED = "skipped"
    SOURCE_DOWN = "source_down"
    SHED = "shed"
    PRODUCER_RESTART = "producer_restart"
    UNACCOUNTED = "unaccounted"

    @property
    def meaning(self) -> str:
        return _MISSED[self]


_MISSED: dict[MissedReason, str] = {
    MissedReason.SKIPPED: "the producer skipped the slot: the source was late (a keyframe or frame came after the slot) or the actor behind",
    MissedReason.SOURCE_DOWN: "the camera's source was down (unreachable, stalled, refused the credentials): slots from its failure until it was back",
    MissedReason.SHED: "not admitted at the source: the pipeline's backlog meant the frame would not be processed before it aged "
    "out (`producer.admission`), so nothing was captured, encoded or stored for it",
    MissedReason.PRODUCER_RESTART: "a producer actor crashed: what it had not announced yet, and the slots until its restart",
    MissedReason.UNACCOUNTED: "neither of the above: a bug, please report it",
}


def reasons_table() -> str:
    """The README's table of reasons (a test keeps the README equal to it)."""
    lines = ["| Outcome | Reason | Decided by | Meaning |", "|---|---|---|---|"]
    lines += [
        f"| {r.outcome} | `{r}` | {r.stage} | {r.meaning} |"
        for r in sorted(Reason, key=lambda r: (r.outcome != Outcome.DROPPED, r.stage, r))
    ]
    lines += [f"| missed slot | `{m}` | summary | {m.meaning} |" for m in MissedReason]
    return "\n".join(lines)
