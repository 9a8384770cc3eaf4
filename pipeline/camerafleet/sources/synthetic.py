"""A generated scene as a camera (no camera needed): it costs one rendered frame per sample, nothing in between."""

from __future__ import annotations

import re
import time

import cv2
import numpy as np

from camerafleet.sources.base import FrameSource, SourceError
from camerafleet.sources.grid import Grid

_SYNTHETIC = re.compile(r"^synthetic:(?:(\d{2,5})x(\d{2,5}))?(?:@(\d{1,3}(?:\.\d+)?))?$")


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
