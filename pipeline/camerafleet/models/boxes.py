"""Box arithmetic shared by the detectors: non-maximum suppression and the detection result format.

Every detector returns `{"detections": [{"box": [x1, y1, x2, y2], "label": str, "score": float}, ...]}`
with boxes in the pixels of the original frame (rounded to 2 decimals), scores rounded to 4 decimals
and detections sorted by score, highest first. Keeping that in one place keeps the detectors alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, classes: np.ndarray | None = None) -> np.ndarray:
    """Greedy non-maximum suppression.

    `boxes` is [K, 4] xyxy, `scores` [K]. A box is dropped when its IoU with a higher-scoring kept box
    is above `iou_threshold`; with `classes` ([K] ints) only boxes of the same class suppress each
    other. Returns the indices of the kept boxes, highest score first (ties keep input order).
    """
    order = np.argsort(-scores, kind="stable")
    if classes is not None and len(boxes):
        # Shift each class into its own region of the plane, so boxes of different classes never overlap.
        span = float(np.max(boxes)) - float(np.min(boxes)) + 1.0
        boxes = boxes + (classes.astype(np.float64) * span)[:, None]
    x1, y1, x2, y2 = (boxes[:, i].astype(np.float64) for i in range(4))
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    keep: list[int] = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        inter_w = np.clip(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0, None)
        inter_h = np.clip(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0, None)
        inter = inter_w * inter_h
        union = areas[best] + areas[rest] - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def detections(
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: Sequence[str],
    extra: Sequence[dict[str, Any]] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Build the JSON-serializable detector result from [K, 4] frame-pixel boxes, [K] scores and K labels.

    `extra` optionally holds one dict of additional fields per detection (e.g. face landmarks).
    """
    items = [
        {
            "box": [round(float(v), 2) for v in box],
            "label": label,
            "score": round(float(score), 4),
            **(extra[i] if extra is not None else {}),
        }
        for i, (box, score, label) in enumerate(zip(boxes, scores, labels, strict=True))
    ]
    items.sort(key=lambda item: item["score"], reverse=True)
    return {"detections": items}
