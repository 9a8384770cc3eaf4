"""Sources that are not cameras on a network: a video file replayed at its own frame rate as a camera that
never stops, and a generated scene (no camera needed)."""

from __future__ import annotations

import re
import time

import cv2
import numpy as np

from camerafleet.sources.base import FrameSource, SourceError, redact
from camerafleet.sources.grid import Grid

_SYNTHETIC = re.compile(r"^synthetic:(?:(\d{2,5})x(\d{2,5}))?(?:@(\d{1,3}(?:\.\d+)?))?$")


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
        self.grid = Grid(epoch_s, self.fps)  # frame k of the endless replay is shown at grid.time_of(k)
        self.index = -1  # absolute frame index since epoch (counts across loops)
        self._seek(max(0, self.grid.slot_of(time.time())))

    def _seek(self, index: int) -> None:
        self.cap.set(cv2.CAP_PROP_POS_FRAMES, index % self.frames)
        self.index = index - 1

    def read_due(self, due: float) -> tuple[float, np.ndarray]:
        target = max(self.grid.first_at_or_after(due), self.index + 1)
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
        wait = self.grid.time_of(self.index) - time.time()
        if wait > 0:
            time.sleep(wait)
        ok, frame = self.cap.retrieve()
        if not ok or frame is None:
            raise SourceError(f"video file {self.name!r}: frame {self.index % self.frames} cannot be decoded")
        return self.grid.time_of(self.index), frame

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
        self.grid = Grid(epoch_s, self.fps)
        rng = np.random.default_rng(seed)
        tile = rng.integers(0, 256, size=(self.height // 8 + 1, self.width // 8 + 1, 3), dtype=np.uint8)
        self.background = cv2.resize(tile, (self.width * 2, self.height), interpolation=cv2.INTER_LINEAR)

    def read_due(self, due: float) -> tuple[float, np.ndarray]:
        index = self.grid.first_at_or_after(due)
        t = self.grid.time_of(index)
        wait = t - time.time()
        if wait > 0:
            time.sleep(wait)
        shift = int(index * 4) % self.width
        frame = np.ascontiguousarray(self.background[:, shift : shift + self.width])
        x = int((index * 7) % max(1, self.width - 120))
        cv2.rectangle(frame, (x, self.height // 3), (x + 120, self.height // 3 + 120), (255, 255, 255), -1)
        cv2.putText(frame, f"{index}", (20, 40), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (0, 255, 255), 2)
        return t, frame
