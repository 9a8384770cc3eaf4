"""An event's clip: the camera's kept frames from a pre-roll before the event to a post-roll after it, as an MP4 the
browser plays, made when someone asks for it (most clips are never watched).

The video is VP9 (libvpx, BSD) in MP4, which Chromium, Firefox and Safari 14+ play: 21 ms of CPU per 1280x720 frame
in libvpx's real-time mode, against 33 ms for libx264 at its veryfast preset, on the 2-core development machine.
Frames keep their capture times (1 ms time base), so a clip of a camera sampled at 2 fps plays at the speed of
life, and frames larger than 1280 pixels across are scaled down first: a 4K camera's clip costs what an HD one does.
"""

from __future__ import annotations

import asyncio
import io
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import av
import cv2
import numpy as np

from camerafleet.bucket import BucketError
from camerafleet.clip_store import ClipStore
from camerafleet.imaging import ImageError, decode_jpeg

MAX_WIDTH = 1280
MAX_FRAMES = 3600  # a 600 s clip (the manifest's longest) of a camera sampled at 6 fps
CLIPS_CACHED = 8  # a few viewers replaying recent events; a clip of 20 s at 5 fps is about 2.5 MB


class ClipNotKept(LookupError):
    """No frames are kept for the clip asked for."""


@dataclass(frozen=True)
class ClipWindow:
    pre_roll_ms: int
    post_roll_ms: int
    max_ms: int

    def around(self, start_ms: int, end_ms: int) -> tuple[int, int]:
        """The capture times a clip of an event from start_ms to end_ms covers."""
        first = start_ms - self.pre_roll_ms
        return first, min(end_ms + self.post_roll_ms, first + self.max_ms)


def encode_mp4(frames: Sequence[tuple[int, np.ndarray]]) -> bytes:
    """(capture ms, BGR image) in capture order, as VP9 in MP4 at the frames' own times."""
    if not frames:
        raise ValueError("a clip needs at least one frame")
    height, width = frames[0][1].shape[:2]
    if width > MAX_WIDTH:
        width, height = MAX_WIDTH, round(height * MAX_WIDTH / width)
    width, height = width - width % 2, height - height % 2  # 4:2:0 needs even sizes
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        stream = container.add_stream("libvpx-vp9", rate=30, options={"deadline": "realtime", "cpu-used": "8", "crf": "36", "b": "0"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.codec_context.thread_count = 1
        first = frames[0][0]
        last_pts = -1
        for capture_ms, image in frames:
            pts = capture_ms - first
            if pts <= last_pts:
                continue  # two frames at one millisecond: the container cannot hold both
            last_pts = pts
            if image.shape[:2] != (height, width):
                image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


class ClipMaker:
    """Clips of a fleet's events from the frames its events stage kept; one made at a time (each costs a core for
    about a second per 50 frames), the last few cached."""

    def __init__(self, store: ClipStore, window: ClipWindow):
        self.store, self.window = store, window
        self.cache: OrderedDict[tuple[str, int, int], bytes] = OrderedDict()
        self.lock = asyncio.Lock()

    async def clip(self, camera_id: str, start_ms: int, end_ms: int) -> bytes:
        key = (camera_id, *self.window.around(start_ms, end_ms))
        async with self.lock:
            if key not in self.cache:
                self.cache[key] = await asyncio.to_thread(self._make, *key)
                while len(self.cache) > CLIPS_CACHED:
                    self.cache.popitem(last=False)
            self.cache.move_to_end(key)
            return self.cache[key]

    def _make(self, camera_id: str, first_ms: int, last_ms: int) -> bytes:
        frames = []
        for capture_ms, uri in self.store.frames(camera_id, first_ms, last_ms, MAX_FRAMES):
            try:
                frames.append((capture_ms, decode_jpeg(self.store.bucket.get(uri))))
            except (BucketError, ImageError):
                continue  # deleted since it was listed, or unreadable: the clip goes on without it
        if not frames:
            raise ClipNotKept(f"no frames of camera {camera_id!r} are kept for this event (clips off, or deleted after keepDays)")
        return encode_mp4(frames)
