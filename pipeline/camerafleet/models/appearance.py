"""What a detection looks like, in 72 bytes: the tracker's way to know an object again after a gap.

At 1-5 fps a person hidden behind another for a few seconds, or missed by the detector while turning, ends
their track, and a passer-by who hides someone can take theirs: motion alone cannot tell who is who (in the
events bench at 5 fps the lost door crossings were faces CenterFace missed for 5-8 s). The replica that found
the box has the decoded frame, so it describes each box there, once (0.05 ms a face; a large box is read
every few pixels, about 96 rows), and the description travels in the result: the tracking stage never reads a
frame, and a replay of the results gives the same tracks.

The description is a colour histogram of the box's inner part in three horizontal bands (for a face: hair and
brow, eyes and nose, mouth and chin; for a person: head, torso, legs), each band 8 hues x 2 saturations and
8 brightness levels, stored as the square roots of its shares (a unit vector per band), one byte each,
base64. Two descriptions compare by the mean Bhattacharyya coefficient of their bands (`similarity`): 1 for
the same colours in the same bands, whatever the box's size. It is not a learned re-identification
embedding: colours tell apart people who dress or look differently, not twins, and a change of light
changes them; the tracker uses it beside motion, never alone (`tracker.py`).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

BANDS = 3
HUES, SATURATIONS, LEVELS = 8, 2, 8
BAND_BINS = HUES * SATURATIONS + LEVELS
SIZE = BANDS * BAND_BINS  # bytes of a description
INNER = 0.1  # of the box's width and height left out on each side: background at the box's edges
MIN_SIDE_PX = 4  # a smaller crop (in the decoded image) is not described
SAMPLED_ROWS = 96  # a crop taller than this is read every few pixels


def describe(image: np.ndarray, box: Sequence[float], frame_size: tuple[int, int]) -> str | None:
    """The description of `box` (frame pixels) in a BGR `image` decoded at any size; None for a box too small."""
    height, width = image.shape[:2]
    sx, sy = width / frame_size[0], height / frame_size[1]
    x1, y1, x2, y2 = (float(v) for v in box)
    dx, dy = (x2 - x1) * INNER, (y2 - y1) * INNER
    left, right = max(0, int((x1 + dx) * sx)), min(width, int(np.ceil((x2 - dx) * sx)))
    top, bottom = max(0, int((y1 + dy) * sy)), min(height, int(np.ceil((y2 - dy) * sy)))
    if right - left < MIN_SIDE_PX or bottom - top < BANDS * MIN_SIDE_PX // 2:
        return None
    step = max(1, (bottom - top) // SAMPLED_ROWS)  # a large box is sampled: its cost stays that of a small one
    hsv = cv2.cvtColor(np.ascontiguousarray(image[top:bottom:step, left:right:step]), cv2.COLOR_BGR2HSV)
    out = np.empty(SIZE, np.uint8)
    edges = np.linspace(0, hsv.shape[0], BANDS + 1).astype(int)
    for b in range(BANDS):
        band = hsv[edges[b] : edges[b + 1]]
        colour = cv2.calcHist([band], [0, 1], None, [HUES, SATURATIONS], [0, 180, 0, 256]).ravel()
        level = cv2.calcHist([band], [2], None, [LEVELS], [0, 256]).ravel()
        shares = np.concatenate([colour, level]) / (2.0 * band.shape[0] * band.shape[1])  # sums to 1
        out[b * BAND_BINS : (b + 1) * BAND_BINS] = np.round(np.sqrt(shares) * 255)
    return base64.b64encode(out.tobytes()).decode()


def vector(description: str) -> np.ndarray | None:
    """A description as float32 band unit vectors; None for one that is not a description (a foreign result)."""
    try:
        raw = base64.b64decode(description, validate=True)
    except (ValueError, TypeError):
        return None
    if len(raw) != SIZE:
        return None
    return np.frombuffer(raw, np.uint8).astype(np.float32) / 255.0


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Bhattacharyya coefficient of the bands: 1 for the same colours band by band, near 0 for none shared."""
    return float(np.dot(a, b)) / BANDS


def blend(mean: np.ndarray, new: np.ndarray, weight: float) -> np.ndarray:
    """A running mean of descriptions, its bands unit vectors again (so it compares as a description does)."""
    bands = ((1 - weight) * mean + weight * new).reshape(BANDS, BAND_BINS)
    norms = np.linalg.norm(bands, axis=1, keepdims=True)
    return (bands / np.where(norms > 0, norms, 1.0)).ravel()


def add_descriptions(images: Sequence[np.ndarray], frame_sizes: Sequence[tuple[int, int]], results: list[dict[str, Any]]) -> None:
    """Each detection of each result gets its `appearance` (kept out where the box is too small)."""
    for image, size, result in zip(images, frame_sizes, results, strict=True):
        for d in result.get("detections", ()):
            description = describe(image, d["box"], size)
            if description is not None:
                d["appearance"] = description
