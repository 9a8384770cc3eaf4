"""Live cameras (RTSP, MJPEG over HTTP, ...) read with PyAV, decoding only what the sampler will take.

Decoding is the producer's biggest cost, and a camera sends far more frames than are sampled (30 fps
sent, 1-5 sampled). PyAV (FFmpeg's libraries) gives what OpenCV's capture does not: packets before
decoding (so a packet nobody needs is never decoded), socket timeouts (a stalled camera is noticed),
RTSP over TCP, and the camera's own clock (RTCP sender reports map RTP time to wall-clock time).

How much is decoded depends on the camera's keyframe interval, learned from the stream (`DecodeMode`):
at or below one sample per keyframe interval only keyframes are decoded (for MJPEG, where every frame is
a keyframe, that is exactly the sampled frames); above it, a group of pictures is decoded up to the last
frame a slot needs and the rest of it is skipped. A decoded frame is converted to BGR only when taken.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections import deque
from collections.abc import Iterator

import av
import av.error
import numpy as np

from camerafleet.api.source_report import DecodeMode, SourceProblem, TimeSource
from camerafleet.sources.base import FrameSource, SourceError
from camerafleet.sources.decoding import keyframes_suffice, to_bgr

OPEN_TIMEOUT_S = 10.0
MAX_CLOCK_LAG_S = 60.0
MAX_CLOCK_LEAD_S = 1.0


def camera_clock_trusted(t: float, arrival: float, max_frame_age_s: float) -> bool:
    """Whether a frame's time on the camera's clock is used as its capture time: not in the future (by more than
    1 s), and not before its arrival by more than half the fleet's freshness budget (at most 60 s). Older: the
    clock is slow, or the stream far behind; either way a capture time that old would spend the budget before
    the frame is read, and every frame of the camera would be dropped as stale. Arrival time is used then
    (the camera's report says which)."""
    max_lag_s = min(MAX_CLOCK_LAG_S, max_frame_age_s / 2)
    return arrival - max_lag_s <= t <= arrival + MAX_CLOCK_LEAD_S


_KEYFRAME_INTERVALS_KEPT = 5


class LiveSource(FrameSource):
    """A live camera opened with PyAV. `read_due` blocks in socket reads (no busy loop) and raises
    `SourceError` with its `SourceProblem` when the camera refuses, stalls or goes away."""

    live = True

    def __init__(self, url: str, display_name: str, inference_fps: float, stall_timeout_s: float, max_frame_age_s: float):
        super().__init__()
        self.name = display_name
        self.max_frame_age_s = max_frame_age_s
        self.period_s = 1.0 / inference_fps
        self.stall_timeout_s = stall_timeout_s
        options = {"rtsp_transport": "tcp"} if url.lower().startswith(("rtsp://", "rtsps://")) else {}
        try:
            self.container = av.open(url, options=options, timeout=(OPEN_TIMEOUT_S, stall_timeout_s))
        except av.error.ExitError:  # PyAV's timeout interrupted the connection attempt
            raise SourceError(
                f"camera stream {display_name!r} did not answer within {OPEN_TIMEOUT_S:g} s", SourceProblem.UNREACHABLE
            ) from None
        except av.error.FFmpegError as err:
            raise _source_error(display_name, "cannot open", err, stall_timeout_s) from None
        if not self.container.streams.video:
            self.container.close()
            raise SourceError(f"camera stream {display_name!r} has no video", SourceProblem.UNREADABLE)
        self.stream = self.container.streams.video[0]
        # One decoding thread per camera: parallelism comes from the cameras (as for files).
        self.stream.codec_context.thread_count = 1
        self.packets: Iterator[av.Packet] = self.container.demux(self.stream)
        self.keyframe_times: deque[float] = deque(maxlen=_KEYFRAME_INTERVALS_KEPT + 1)
        self.last_keyframe_pts: int | None = None
        self.gop_start_s: float | None = None  # capture time of the keyframe that opened the current group
        self.decoding_gop = False  # whether the current group's keyframe was decoded (later frames need it)
        self.decode_mode = DecodeMode.EVERY_FRAME
        self.time_source = TimeSource.ARRIVAL

    @property
    def keyframe_interval_s(self) -> float | None:
        """Median of the last keyframe intervals; None until two keyframes arrived."""
        times = list(self.keyframe_times)
        if len(times) < 2:
            return None
        return statistics.median(b - a for a, b in itertools.pairwise(times))

    def _capture_time(self, pts: int | None, arrival: float) -> float:
        realtime_us = self.container.start_time_realtime
        if realtime_us and pts is not None and self.stream.time_base is not None:
            t = realtime_us / 1e6 + float(pts * self.stream.time_base)
            if camera_clock_trusted(t, arrival, self.max_frame_age_s):
                self.time_source = TimeSource.CAMERA_CLOCK
                return t
        self.time_source = TimeSource.ARRIVAL
        return arrival

    def _note_keyframe(self, pts: int, t: float) -> None:
        if pts == self.last_keyframe_pts:
            return  # parameter sets and the picture of one keyframe can come as packets with one timestamp
        self.last_keyframe_pts = pts
        # Intervals are measured on the stream's own timestamps, whichever clock capture times come from: arrival
        # times are as irregular as the network and the machine (tens of ms on a busy one), enough to flip the
        # decoding mode of a camera whose keyframe interval is its sampling period, the commonest set-up.
        self.keyframe_times.append(float(pts * self.stream.time_base) if self.stream.time_base is not None else t)
        self.gop_start_s = t
        interval = self.keyframe_interval_s
        if interval is not None:
            slow = keyframes_suffice(self.period_s, interval)
            self.decode_mode = DecodeMode.KEYFRAMES_ONLY if slow else DecodeMode.UNTIL_LAST_SAMPLED

    def _worth_decoding(self, keyframe: bool, t: float, due: float) -> bool:
        """Whether the packet at capture time `t` must be decoded for the frame due at `due` or a later one."""
        if keyframe:
            if self.decode_mode == DecodeMode.KEYFRAMES_ONLY:
                self.decoding_gop = t >= due
            else:
                interval = self.keyframe_interval_s
                self.decoding_gop = interval is None or due < t + interval  # a slot falls in this group
            return self.decoding_gop
        if not self.decoding_gop or self.decode_mode == DecodeMode.KEYFRAMES_ONLY:
            return False  # without its keyframe a frame cannot be decoded; in keyframes mode it is not wanted
        interval = self.keyframe_interval_s
        if interval is None or self.gop_start_s is None:
            return True
        # When the next keyframe is expected within half a slot of the frame due, it serves that slot: the
        # rest of this group is skipped (each frame references the one before). Half a slot of slack absorbs
        # a keyframe that comes a little later than the interval says.
        self.decoding_gop = due + self.period_s / 2 < self.gop_start_s + interval
        return self.decoding_gop

    def read_due(self, due: float) -> tuple[float, np.ndarray]:
        while True:
            try:
                packet = next(self.packets)
            except StopIteration:
                raise SourceError(f"camera stream {self.name!r} ended", SourceProblem.ENDED) from None
            except av.error.FFmpegError as err:
                raise _source_error(self.name, "lost", err, self.stall_timeout_s) from None
            if packet.size == 0:  # the demuxer's flush packet: the stream is over
                raise SourceError(f"camera stream {self.name!r} ended", SourceProblem.ENDED)
            if packet.pts is None:
                continue
            self.counts.packets += 1
            arrival = time.time()
            t = self._capture_time(packet.pts, arrival)
            if packet.is_keyframe:
                self._note_keyframe(packet.pts, t)
            if not self._worth_decoding(packet.is_keyframe, t, due):
                continue
            try:
                frames = self.stream.codec_context.decode(packet)
            except av.error.InvalidDataError:
                self.decoding_gop = False  # a damaged packet: wait for the next keyframe
                continue
            for frame in frames:
                self.counts.decoded += 1
                frame_t = self._capture_time(frame.pts, arrival)
                if frame_t >= due:
                    return frame_t, to_bgr(frame)

    def close(self) -> None:
        self.container.close()


def _source_error(name: str, what: str, err: av.error.FFmpegError, stall_timeout_s: float) -> SourceError:
    """A SourceError that says which of the camera's problems this FFmpeg error is."""
    if isinstance(err, av.error.HTTPUnauthorizedError | av.error.HTTPForbiddenError) or "401" in str(err):
        return SourceError(f"camera stream {name!r} refused the credentials (authentication failed)", SourceProblem.AUTH_FAILED)
    if isinstance(err, av.error.ExitError):  # PyAV's timeout interrupted a blocking read
        return SourceError(f"camera stream {name!r} sent nothing for {stall_timeout_s:g} s (stalled)", SourceProblem.STALLED)
    if isinstance(err, av.error.InvalidDataError):
        return SourceError(f"camera stream {name!r}: {what}, not a video stream ({err.strerror})", SourceProblem.UNREADABLE)
    return SourceError(f"camera stream {name!r}: {what} ({err.strerror})", SourceProblem.UNREACHABLE)
