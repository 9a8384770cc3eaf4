"""Camera sources and the sampler that turns a capture stream into frames for inference.

A source is a video file (played at its own frame rate, looping, like a camera that never stops), a
live camera (RTSP, MJPEG over HTTP: `live.py`), or a synthetic scene. Frames are sampled down to the
camera's `inferenceFps` on a grid anchored at the run's epoch: a frame's sequence number is its slot
on that grid, so several producer actors sharing a camera (each taking every n-th slot) and an actor
that takes over a camera mid-run agree on sequence numbers without talking to each other.
"""

from __future__ import annotations

import math
import re
import time
import zlib
from abc import ABC, abstractmethod
from dataclasses import dataclass

import cv2
import numpy as np

from camerafleet.api.source_report import DecodeMode, SourceProblem, TimeSource

_SYNTHETIC = re.compile(r"^synthetic:(?:(\d{2,5})x(\d{2,5}))?(?:@(\d{1,3}(?:\.\d+)?))?$")
# Slack when rounding times to frame indices and slots: absolute times near 1.8e9 s carry ~2.4e-7 s of
# float error, so 1e-4 of a frame (about a microsecond at 120 fps) keeps round trips exact.
SLOT_EPSILON = 1e-4
_STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")


class SourceError(Exception):
    """The source cannot be opened or stopped delivering frames; the producer reconnects with backoff
    (slowly for refused credentials: trying again soon would not help and may lock the account)."""

    def __init__(self, message: str, problem: SourceProblem = SourceProblem.UNREADABLE):
        super().__init__(message)
        self.problem = problem


def slot_phase_s(camera_id: str, fps: float) -> float:
    """Where in its sampling period a camera's slots fall: a stable fraction of the period derived from
    its id. Cameras of one fleet share the run's epoch; without this, 150 cameras at the same fps would
    all capture at the same instant and hit the pipeline as one burst per period."""
    return (zlib.crc32(camera_id.encode()) % 1000) / 1000 / fps


@dataclass
class Sampler:
    """Picks the frames of one shard of a camera on the inference-fps grid that starts at `epoch_s`."""

    epoch_s: float
    fps: float
    shard: int = 0
    shards: int = 1
    last_slot: int = -1
    skipped_slots: int = 0

    def slot_of(self, t: float) -> int:
        return math.floor((t - self.epoch_s) * self.fps + SLOT_EPSILON)

    def next_slot(self) -> int:
        """The next slot this shard owns."""
        slot = self.last_slot + 1
        return slot + (self.shard - slot) % self.shards

    def next_due(self) -> float:
        """Wall-clock time of the next slot this shard owns."""
        return self.epoch_s + self.next_slot() / self.fps

    def miss_until(self, t: float) -> int:
        """Give up this shard's slots up to the one at `t` (its source is down); returns how many."""
        first, slot = self.next_slot(), self.slot_of(t)
        if slot < first:
            return 0
        missed = (slot - first) // self.shards + 1
        self.last_slot = first + (missed - 1) * self.shards
        return missed

    def shed_next(self) -> int:
        """Give up this shard's next slot (not admitted: the pipeline could not process it in time); returns 1."""
        self.last_slot = self.next_slot()
        return 1

    def accept(self, t: float) -> int | None:
        """The frame's sequence number if a frame captured at `t` is this shard's next sample, else None."""
        slot = self.slot_of(t)
        if slot < 0 or slot <= self.last_slot or slot % self.shards != self.shard:
            return None  # slot 0 is the first: a frame from before the camera's grid starts is not a sample
        if self.last_slot >= 0:
            self.skipped_slots += max(0, (slot - self.last_slot) // self.shards - 1)
        self.last_slot = slot
        return slot


@dataclass
class DecodeCounts:
    """What a live source received and decoded since the producer last took the counts."""

    packets: int = 0
    decoded: int = 0

    def take(self) -> DecodeCounts:
        taken = DecodeCounts(self.packets, self.decoded)
        self.packets = self.decoded = 0
        return taken


class FrameSource(ABC):
    """A camera. `read_due(t)` blocks until the first frame captured at or after wall-clock time `t`.

    A file or synthetic frame's capture time is its presentation time on the wall clock (so a briefly
    delayed producer still takes every slot, and the delay shows as latency); a live stream's is the
    moment it was grabbed."""

    name: str
    live: bool = False
    """True for a live stream, which must keep reading while it waits; others are read when due."""
    decode_mode: DecodeMode | None = None
    time_source: TimeSource | None = None

    def __init__(self) -> None:
        self.counts = DecodeCounts()

    @abstractmethod
    def read_due(self, due: float) -> tuple[float, np.ndarray]:
        """(capture time in seconds since the Unix epoch, BGR frame); SourceError when the source fails."""

    def close(self) -> None:
        """Release the source."""


class VideoFileSource(FrameSource):
    """A video file played at its own frame rate, looping, on the wall clock from `epoch_s`.

    Also what any other URL OpenCV can open (srt://, ...) ends up as, so messages use `display_name`:
    the path may be a secret URL from `sourceSecretEnv`."""

    def __init__(self, path: str, epoch_s: float, display_name: str | None = None):
        super().__init__()
        self.name = display_name or redact(path)
        # One decoding thread per camera: parallelism comes from the cameras, and FFmpeg's own thread pool
        # per capture would multiply threads by cameras and hide the decode cost from the capture stage.
        self.cap = cv2.VideoCapture(path, cv2.CAP_ANY, [cv2.CAP_PROP_N_THREADS, 1])
        if not self.cap.isOpened():
            raise SourceError(f"cannot open video file {self.name!r} (missing, unreadable or not a video)")
        self.fps = self.cap.get(cv2.CAP_PROP_FPS) or 25.0
        self.frames = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT)) or 0
        if self.frames <= 0:
            raise SourceError(f"video file {self.name!r} has no frames")
        self.epoch_s = epoch_s
        self.index = -1  # absolute frame index since epoch (counts across loops)
        self._seek(max(0, math.floor((time.time() - epoch_s) * self.fps)))

    def _seek(self, index: int) -> None:
        self.cap.set(cv2.CAP_PROP_POS_FRAMES, index % self.frames)
        self.index = index - 1

    def _frame_time(self, index: int) -> float:
        return self.epoch_s + index / self.fps

    def read_due(self, due: float) -> tuple[float, np.ndarray]:
        target = max(math.ceil((due - self.epoch_s) * self.fps - SLOT_EPSILON), self.index + 1)
        if target - self.index > 2 * self.fps:  # far behind or ahead: jump instead of decoding every frame
            self._seek(target)
        while True:
            self.index += 1
            if self.index % self.frames == 0 and self.index > 0:
                self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            if not self.cap.grab():
                raise SourceError(f"video file {self.name!r} stopped decoding at frame {self.index % self.frames}")
            if self.index >= target:
                break
        wait = self._frame_time(self.index) - time.time()
        if wait > 0:
            time.sleep(wait)
        ok, frame = self.cap.retrieve()
        if not ok or frame is None:
            raise SourceError(f"video file {self.name!r}: frame {self.index % self.frames} cannot be decoded")
        return self._frame_time(self.index), frame

    def close(self) -> None:
        self.cap.release()


class SyntheticSource(FrameSource):
    """A generated scene (textured background panning, a moving block, a clock): no camera needed."""

    def __init__(self, spec: str, seed: int, epoch_s: float):
        super().__init__()
        m = _SYNTHETIC.match(spec)
        if not m:
            raise SourceError(f"synthetic source {spec!r} must look like synthetic: or synthetic:1280x720@30")
        self.name = spec
        self.width, self.height = int(m.group(1) or 1280), int(m.group(2) or 720)
        self.fps = float(m.group(3) or 30)
        if not 0 < self.fps <= 240:
            raise SourceError(f"synthetic source {spec!r}: fps must be in (0, 240]")
        self.epoch_s = epoch_s
        rng = np.random.default_rng(seed)
        tile = rng.integers(0, 256, size=(self.height // 8 + 1, self.width // 8 + 1, 3), dtype=np.uint8)
        self.background = cv2.resize(tile, (self.width * 2, self.height), interpolation=cv2.INTER_LINEAR)

    def read_due(self, due: float) -> tuple[float, np.ndarray]:
        index = math.ceil((due - self.epoch_s) * self.fps - SLOT_EPSILON)
        t = self.epoch_s + index / self.fps
        wait = t - time.time()
        if wait > 0:
            time.sleep(wait)
        shift = int(index * 4) % self.width
        frame = np.ascontiguousarray(self.background[:, shift : shift + self.width])
        x = int((index * 7) % max(1, self.width - 120))
        cv2.rectangle(frame, (x, self.height // 3), (x + 120, self.height // 3 + 120), (255, 255, 255), -1)
        cv2.putText(frame, f"{index}", (20, 40), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (0, 255, 255), 2)
        return t, frame


def is_stream_url(source: str) -> bool:
    return source.lower().startswith(_STREAM_SCHEMES)


_USERINFO = re.compile(r"(?<=://)[^?#]*@")  # up to the last '@' before the query: passwords may hold '@' or '/'
_SECRET_PARAM = re.compile(r"(?i)([?&;][^=&;#]*(?:pass|pwd|token|key|secret|auth|sig|cred|user|usr|login)[^=&;#]*=)[^&;#]*")


def redact(url: str) -> str:
    """A source URL safe for logs: user info and credential-like query values replaced by ***.

    Errs on the side of hiding: with an unencoded '@' or '/' in a password, everything before the last
    '@' (ahead of the query) goes."""
    if "://" not in url:
        return url
    return _SECRET_PARAM.sub(r"\1***", _USERINFO.sub("***@", url, count=1))


def open_source(
    source: str,
    *,
    epoch_s: float,
    inference_fps: float,
    stall_timeout_s: float,
    max_frame_age_s: float,
    seed: int = 0,
    display_name: str | None = None,
) -> FrameSource:
    """Open a camera source; SourceError with a message naming the camera otherwise. `max_frame_age_s` is the
    fleet's freshness budget (consumer.maxFrameAgeMs), which bounds how slow a camera's clock may be trusted."""
    if source.startswith("synthetic:"):
        return SyntheticSource(source, seed, epoch_s)
    if is_stream_url(source):
        from camerafleet.live import LiveSource  # PyAV is loaded only by producers of live cameras

        return LiveSource(source, display_name or redact(source), inference_fps, stall_timeout_s, max_frame_age_s)
    return VideoFileSource(source, epoch_s, display_name)
