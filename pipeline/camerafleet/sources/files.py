"""A video file replayed at its own frame rate, looping, as a camera that never stops, decoding only what is sampled.

A file's timeline is known the moment it opens: its packets are indexed once (presentation times and keyframes,
read without decoding: 13 ms for the demo's 15 MB clip of 360 frames). Each sample is then reached the cheapest
way, as the live source does (`live.py`): a keyframe inside the slot is decoded alone; otherwise the group of
pictures is decoded from its keyframe, or from where the decoder already is, up to the sampled frame, and the
rest of the group is never decoded. The demo's clips (30 fps, a keyframe every 12 frames) sampled at 1 fps
decode one frame per sample where OpenCV's capture decoded 30.
"""

from __future__ import annotations

import bisect
import itertools
import statistics
import time
from collections.abc import Iterator

import av
import av.error
import numpy as np

from camerafleet.api.source_report import DecodeMode
from camerafleet.sources.base import FrameSource, SourceError, redact
from camerafleet.sources.decoding import keyframes_suffice, to_bgr
from camerafleet.sources.grid import Grid

DEFAULT_FPS = 25.0  # a file that states no frame rate is played at PAL's
_IN_SLOT = 1 - 1e-3  # a keyframe serves a slot when it is before the slot's end by more than float noise


class VideoFileSource(FrameSource):
    """A video file played at its own frame rate, looping, on the wall clock from `epoch_s`: frame k of the endless
    replay is shown at `grid.time_of(k)` and counts from the epoch across loops. `period_s` is the camera's sampling
    period, which says whether a keyframe later than a due time still serves its slot.

    Messages name `display_name`: the path may come from a secret (`sourceSecretEnv`)."""

    def __init__(self, path: str, epoch_s: float, period_s: float, display_name: str | None = None):
        super().__init__()
        self.name = display_name or redact(path)
        self.period_s = period_s
        try:
            self.container = av.open(path)
        except (av.error.FFmpegError, OSError, ValueError):
            raise SourceError(f"cannot open video file {self.name!r} (missing, unreadable or not a video)") from None
        try:
            if not self.container.streams.video:
                raise SourceError(f"video file {self.name!r} has no video")
            self.stream = self.container.streams.video[0]
            # One decoding thread per camera: parallelism comes from the cameras, and FFmpeg's own thread pool per
            # file would multiply threads by cameras and hide the decode cost from the capture stage.
            self.stream.codec_context.thread_count = 1
            self.pts, self.keyframes = self._index()
        except BaseException:
            self.container.close()
            raise
        self.frames = len(self.pts)
        self.position = {pts: i for i, pts in enumerate(self.pts)}
        rate = self.stream.average_rate or self.stream.guessed_rate
        self.grid = Grid(epoch_s, float(rate) if rate else DEFAULT_FPS)
        # What the report says, as for a live camera: keyframes only when every slot holds one.
        gaps = [b - a for a, b in itertools.pairwise(self.keyframes)] or [self.frames]
        slow = keyframes_suffice(period_s, statistics.median(gaps) / self.grid.fps)
        self.decode_mode = DecodeMode.KEYFRAMES_ONLY if slow else DecodeMode.UNTIL_LAST_SAMPLED
        self.last = -1  # the last frame returned (absolute: counts across loops); never returned twice
        self.next_out: int | None = None  # the frame the decoder yields next if it goes on; None: it must seek first
        self.decoded: Iterator[av.VideoFrame] = iter(())

    def _index(self) -> tuple[list[int], list[int]]:
        """Every frame's presentation time in order, and the positions of the keyframes, without decoding."""
        times, keys = set(), set()
        try:
            for packet in self.container.demux(self.stream):
                if packet.pts is None or packet.size == 0:
                    continue
                times.add(packet.pts)
                if packet.is_keyframe:
                    keys.add(packet.pts)
        except av.error.FFmpegError as err:
            raise SourceError(f"video file {self.name!r} cannot be read ({err.strerror})") from None
        if not times:
            raise SourceError(f"video file {self.name!r} has no frames")
        ordered = sorted(times)
        return ordered, sorted(bisect.bisect_left(ordered, pts) for pts in keys)

    def read_due(self, due: float) -> tuple[float, np.ndarray]:
        wanted = max(self.grid.first_at_or_after(due), self.last + 1)
        key = self._next_keyframe(wanted)
        index = key if self.grid.time_of(key) < due + self.period_s * _IN_SLOT and self._cost(wanted) > 1 else wanted
        frame = self._decode(index)
        self.last = index
        t = self.grid.time_of(index)
        wait = t - time.time()
        if wait > 0:
            time.sleep(wait)
        return t, to_bgr(frame)

    def _next_keyframe(self, index: int) -> int:
        loop, f = divmod(index, self.frames)
        j = bisect.bisect_left(self.keyframes, f)
        return loop * self.frames + self.keyframes[j] if j < len(self.keyframes) else (loop + 1) * self.frames + self.keyframes[0]

    def _start_of_group(self, index: int) -> int:
        """Where decoding frame `index` may start: its keyframe (the file's start before the first keyframe)."""
        loop, f = divmod(index, self.frames)
        j = bisect.bisect_right(self.keyframes, f) - 1
        return loop * self.frames + (self.keyframes[j] if j >= 0 else 0)

    def _decode_from(self, index: int) -> int:
        """The frame decoding starts from to reach `index`: where the decoder is, when it can go on from there (same
        loop, same group or an earlier one of it), else the group's keyframe."""
        start = self._start_of_group(index)
        if self.next_out is not None and start <= self.next_out <= index and self.next_out // self.frames == index // self.frames:
            return self.next_out
        return start

    def _cost(self, index: int) -> int:
        """Frames decoded to reach `index`."""
        return index - self._decode_from(index) + 1

    def _decode(self, index: int) -> av.VideoFrame:
        start = self._decode_from(index)
        if start != self.next_out:
            try:
                self.container.seek(self.pts[start % self.frames], stream=self.stream, backward=True)
            except av.error.FFmpegError as err:
                raise SourceError(f"video file {self.name!r} cannot seek to frame {start % self.frames} ({err.strerror})") from None
            self.decoded, self.next_out = self._frames(), start
        loop, f = divmod(index, self.frames)
        try:
            for frame in self.decoded:
                at = self.position.get(frame.pts) if frame.pts is not None else None
                if at is None:
                    continue  # a frame outside the index (before a seek point): not on the timeline
                self.next_out = loop * self.frames + at + 1 if at + 1 < self.frames else None  # the next loop seeks back
                if at >= f:  # later only when frame f itself did not decode
                    return frame
        except av.error.FFmpegError as err:
            self.next_out = None
            raise SourceError(f"video file {self.name!r} stopped decoding at frame {f} ({err.strerror})") from None
        self.next_out = None
        raise SourceError(f"video file {self.name!r} stopped decoding at frame {f}")

    def _frames(self) -> Iterator[av.VideoFrame]:
        """Decoded frames in presentation order from the demuxer's position on (a flush packet ends the file)."""
        for packet in self.container.demux(self.stream):
            if packet.size:
                self.counts.packets += 1
            for frame in self.stream.codec_context.decode(packet):
                self.counts.decoded += 1
                yield frame

    def close(self) -> None:
        self.container.close()
