"""A constant-velocity Kalman filter of one box, on the clock rather than on frame counts.

ByteTrack and its relatives step the filter once per frame, which assumes frames come at a fixed rate.
A CameraFleet camera is sampled at 1-5 fps and a slot can be shed, so the time between two results of a
camera varies (0.2 s, then 0.6 s after two shed slots): the filter moves a box by its velocity times the
seconds elapsed, and its uncertainty grows with them. Velocities are in pixels per second.

State: centre x, centre y, width, height and their velocities. Noise scales with the box's height, as in
ByteTrack (a person 400 px tall moves and jitters more, in pixels, than one 40 px tall).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Standard deviations as fractions of the box's height: a measured box edge is off by about 5% of the height
# (ByteTrack's 1/20), a position drifts by 5% of the height a second, and a velocity changes by 60% of the
# height a second per second (people start, stop and turn within a second; at 1 fps the filter must not trust
# the last velocity for long).
MEASUREMENT_STD = 0.05
POSITION_STD_PER_S = 0.05
VELOCITY_STD_PER_S = 0.6

_H = np.hstack([np.eye(4), np.zeros((4, 4))])  # we measure centre and size, not velocities


def xyxy_to_xywh(box: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = box
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dtype=np.float64)


def xywh_to_xyxy(s: np.ndarray) -> np.ndarray:
    cx, cy, w, h = s[:4]
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dtype=np.float64)


@dataclass
class BoxFilter:
    """The filter's belief about one object: `mean` (8) and `cov` (8x8)."""

    mean: np.ndarray
    cov: np.ndarray

    @classmethod
    def start(cls, box: np.ndarray) -> BoxFilter:
        z = xyxy_to_xywh(box)
        h = max(z[3], 1.0)
        # Position as sure as a measurement; velocity unknown: up to about one box height a second.
        std = np.array([MEASUREMENT_STD * h] * 4 + [h, h, 0.1 * h, 0.1 * h])
        return cls(np.concatenate([z, np.zeros(4)]), np.diag(std**2))

    def box(self) -> np.ndarray:
        return xywh_to_xyxy(self.mean)

    def predicted(self, dt: float) -> BoxFilter:
        """The belief `dt` seconds later (a new filter; this one is unchanged)."""
        if dt <= 0:
            return BoxFilter(self.mean.copy(), self.cov.copy())
        f = np.eye(8)
        f[:4, 4:] = np.eye(4) * dt
        h = max(self.mean[3], 1.0)
        q = np.diag([(POSITION_STD_PER_S * h) ** 2 * dt] * 4 + [(VELOCITY_STD_PER_S * h) ** 2 * dt] * 4)
        mean = f @ self.mean
        mean[2:4] = np.maximum(mean[2:4], 1.0)  # a box does not shrink below a pixel
        return BoxFilter(mean, f @ self.cov @ f.T + q)

    def updated(self, box: np.ndarray) -> BoxFilter:
        """The belief after measuring `box` (xyxy) now."""
        z = xyxy_to_xywh(box)
        r = np.diag([(MEASUREMENT_STD * max(z[3], 1.0)) ** 2] * 4)
        s = _H @ self.cov @ _H.T + r
        gain = np.linalg.solve(s, _H @ self.cov).T
        mean = self.mean + gain @ (z - _H @ self.mean)
        cov = (np.eye(8) - gain @ _H) @ self.cov
        return BoxFilter(mean, (cov + cov.T) / 2)

    def to_state(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "cov": self.cov.ravel().tolist()}

    @classmethod
    def from_state(cls, state: dict[str, list[float]]) -> BoxFilter:
        return cls(np.asarray(state["mean"], dtype=np.float64), np.asarray(state["cov"], dtype=np.float64).reshape(8, 8))
