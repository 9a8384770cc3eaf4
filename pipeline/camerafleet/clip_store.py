"""Frames kept for clips, in the fleet's bucket under `Clips/<camera>/`: the events stage keeps them, the console
reads them back to make an event's clip.

Keeping is a copy inside the bucket (a server-side copy on S3, a hard link in a directory), so no frame's bytes
pass through the events stage. A frame that expired before it could be kept (a stage far behind the bucket's TTL)
is counted, and its clip has a gap. Kept frames are deleted `keep_days` after they were written, camera by camera,
by the stage that tracks the camera.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from camerafleet.bucket import BucketError, FrameBucket
from camerafleet.bucket.base import capture_ms_of_clip_key, clip_folder, clip_key, clip_name

COPIES_AT_ONCE = 8  # a batch of a busy camera at 5 fps keeps ~25 frames: 8 copies in flight take it in 3-4 round trips
SWEEP_EVERY_S = 600.0  # per camera; a kept frame lives keep_days, so ten minutes late is nothing


class ClipStore:
    def __init__(self, bucket: FrameBucket, keep_days: int):
        self.bucket, self.keep_s = bucket, keep_days * 86400.0
        self.pool = ThreadPoolExecutor(COPIES_AT_ONCE, thread_name_prefix="clip-keep")
        self.swept_at: dict[str, float] = {}
        self.counts: Counter[str] = Counter()  # kept, and what kept a frame from being kept (by reason)

    async def keep(self, frames: Iterable[tuple[str, int, str]]) -> None:
        """Keep each (camera, capture ms, frame uri); due sweeps of those cameras' kept frames follow."""
        frames = list(frames)
        loop = asyncio.get_running_loop()
        outcomes = await asyncio.gather(*(loop.run_in_executor(self.pool, self._keep_one, *f) for f in frames))
        self.counts.update(outcomes)
        now = time.monotonic()
        for camera in sorted({camera for camera, _, _ in frames}):
            if now - self.swept_at.setdefault(camera, now) >= SWEEP_EVERY_S:
                self.swept_at[camera] = now
                await loop.run_in_executor(self.pool, self._sweep, camera)

    def _keep_one(self, camera: str, capture_ms: int, uri: str) -> str:
        try:
            self.bucket.keep(uri, clip_key(camera, capture_ms))
        except BucketError as err:
            return f"not kept: {err.reason.value}"
        return "kept"

    def _sweep(self, camera: str) -> None:
        try:
            self.counts["deleted"] += self.bucket.sweep(clip_folder(camera), self.keep_s)
        except BucketError as err:
            self.counts[f"not deleted: {err.reason.value}"] += 1

    def frames(self, camera: str, start_ms: int, end_ms: int, most: int) -> list[tuple[int, str]]:
        """The kept frames of `camera` captured in [start_ms, end_ms], in order, at most `most`: (capture ms, uri)."""
        keys = self.bucket.keys(clip_folder(camera), clip_name(start_ms - 1), clip_name(end_ms), most)
        return [(capture_ms_of_clip_key(k), self.bucket.uri_of(k)) for k in keys]

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
