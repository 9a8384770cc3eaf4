"""What every frame bucket backend shares: the interface, key naming and the checks that keep every
read inside the bucket (a frame URI comes from a Kafka message, so it is untrusted input)."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod

from camerafleet.api.outcomes import Reason

_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class BucketError(Exception):
    """A bucket operation that failed on a frame; `reason` is what the ledger and the metrics count."""

    def __init__(self, reason: Reason, message: str):
        super().__init__(message)
        self.reason = reason


class BucketConfigError(ValueError):
    """A bucket that cannot be used at all (a malformed URI or endpoint, no credentials); the message says what to fix."""


def frame_key(camera_id: str, epoch_ms: int, seq: int) -> str:
    """Object key of a frame: one folder per camera, so expiry can sweep camera by camera."""
    return f"{camera_id}/{epoch_ms}-{seq:09d}.jpg"


def summary_key(fleet: str, run_id: str, role: str) -> str:
    """Object key of a run's summary, beside the frames (and kept as long as they are). Camera ids are lower
    case, so no camera's folder can be `Summaries`."""
    return f"Summaries/{fleet}/{run_id}-{role}.json"


def clip_folder(camera_id: str) -> str:
    """Where a camera's frames kept for clips go: beside the frames, outside the camera's own folder, which producers
    sweep at the frames' TTL (camera ids are lower case, so no camera's folder can be `Clips`)."""
    return f"Clips/{camera_id}"


def clip_name(capture_ms: int) -> str:
    """A kept frame's name: its capture time, zero-padded so that names sort in time order."""
    return f"{capture_ms:013d}.jpg"


def clip_key(camera_id: str, capture_ms: int) -> str:
    return f"{clip_folder(camera_id)}/{clip_name(capture_ms)}"


def capture_ms_of_clip_key(key: str) -> int:
    return int(key.rsplit("/", 1)[-1].removesuffix(".jpg"))


def check_key(key: str) -> str:
    """Refuse keys that could leave the bucket: `..`, absolute paths, empty or odd segments."""
    parts = key.split("/")
    if not key or len(key) > 1024 or not all(_SEGMENT.match(p) and p not in (".", "..") for p in parts):
        raise BucketError(Reason.URI_OUTSIDE_BUCKET, f"frame key {key!r} is not a plain relative key inside the bucket")
    return key


class FrameBucket(ABC):
    """A place to put and get frames by URI. Implementations are thread-safe."""

    def __init__(self, root_uri: str, max_frame_bytes: int):
        self.root_uri = root_uri.rstrip("/")
        self.max_frame_bytes = max_frame_bytes

    def uri_of(self, key: str) -> str:
        return f"{self.root_uri}/{check_key(key)}"

    def key_of(self, uri: str) -> str:
        """The key of a URI that must point inside this bucket; anything else is refused."""
        if not isinstance(uri, str) or not uri.startswith(self.root_uri + "/"):
            raise BucketError(Reason.URI_OUTSIDE_BUCKET, f"frame URI {uri!r} is not inside the bucket {self.root_uri}")
        return check_key(uri[len(self.root_uri) + 1 :])

    def put(self, key: str, data: bytes) -> str:
        """Store a frame; returns its URI."""
        self._put(check_key(key), data)
        return self.uri_of(key)

    def get(self, uri: str) -> bytes:
        """Fetch a frame by URI; BucketError with reason frame_missing, frame_too_large, uri_outside_bucket
        or bucket_unavailable otherwise."""
        return self._get(self.key_of(uri))

    def keep(self, uri: str, key: str) -> None:
        """Copy the frame at `uri` to `key` inside the bucket (again is harmless); BucketError with frame_missing when
        it has expired."""
        self._copy(self.key_of(uri), check_key(key))

    def keys(self, folder: str, after: str, upto: str, most: int) -> list[str]:
        """The keys directly in `folder` whose names sort after `after` and up to `upto`, in order, at most `most`."""
        return self._keys(check_key(folder), after, upto, most)

    @abstractmethod
    def prepare(self, ttl_seconds: int) -> None:
        """Create the bucket if needed and set up expiry of frames older than ttl_seconds."""

    @abstractmethod
    def sweep(self, prefix: str, ttl_seconds: float) -> int:
        """Delete frames under `prefix` older than ttl_seconds; returns how many were deleted."""

    @abstractmethod
    def _put(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def _get(self, key: str) -> bytes: ...

    @abstractmethod
    def _copy(self, source: str, key: str) -> None: ...

    @abstractmethod
    def _keys(self, folder: str, after: str, upto: str, most: int) -> list[str]: ...
