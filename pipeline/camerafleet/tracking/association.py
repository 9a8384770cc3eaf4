"""Matching tracks to detections: buffered IoU as the similarity, and an optimal assignment (`lap`'s LAPJV,
ByteTrack's own choice: BSD-2-Clause, 1.7 MB, numpy only).

Plain IoU fails at the rates cameras are sampled at: a person walking across a 1080p frame moves about a
body width a second, so at 1 fps the box of one result and the next often do not overlap at all, even
after the Kalman filter's prediction (its velocity is a guess until the second result). Buffered IoU
(C-BIoU, Yang et al., WACV 2023) enlarges both boxes before comparing them; the buffer grows with the
seconds since the track was last seen, so at 5 fps boxes are compared almost as they are and at 1 fps
with a margin of half their size (a track whose velocity is not known yet: their whole size).
"""

from __future__ import annotations

import lap
import numpy as np


def buffered(boxes: np.ndarray, buffer: np.ndarray) -> np.ndarray:
    """[N, 4] xyxy boxes each enlarged on every side by `buffer` [N] times its larger side. The larger side,
    not each side: a person's box is three times taller than wide, and people move sideways about their own
    height a second, not their width."""
    margin = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) * buffer
    return boxes + np.stack([-margin, -margin, margin, margin], axis=1)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of `a` [N, 4] with every box of `b` [M, 4] (xyxy): [N, M]."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def assign(similarity: np.ndarray, minimum: float) -> list[tuple[int, int]]:
    """The (row, column) pairs of the assignment that maximises total similarity, keeping only pairs at
    `minimum` or above. Deterministic: the same matrix gives the same pairs."""
    if similarity.size == 0:
        return []
    _, rows, _ = lap.lapjv(1.0 - similarity, extend_cost=True, cost_limit=1.0 - minimum + 1e-9)
    return [(int(r), int(c)) for r, c in enumerate(rows) if c >= 0 and similarity[r, c] >= minimum]
