"""Object detection with YOLOv8 / YOLO11 ONNX exports (`yolo export format=onnx`, without embedded NMS).

The export takes [N, 3, S, S] RGB float32 scaled to 0-1 and returns [N, 4 + C, A]: for each of A
anchors the box centre, width and height in input pixels, then C class scores. Frames are
letterboxed exactly like ultralytics (aspect kept, grey 114 padding centred), so results match the
reference implementation, and boxes are mapped back to the pixels of each original frame (also when
the frame was decoded smaller than the camera took it: the letterbox maps to the decoded image, and
that image to the frame by the ratio of their sizes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, cast

import cv2
import numpy as np

from camerafleet.api.manifest import BucketSpec, YoloParams
from camerafleet.models.base import FrameSize, OnnxModel, frame_sizes_of
from camerafleet.models.boxes import detections, nms

PAD_VALUE = 114


@dataclass(frozen=True)
class Letterbox:
    """How one image was placed in the square input: input = image * scale + (pad_x, pad_y), and how the
    image maps to its original frame: frame = image * (to_frame_x, to_frame_y) (1, 1 unless it was
    decoded smaller)."""

    scale: float
    pad_x: int
    pad_y: int
    frame_width: int
    frame_height: int
    to_frame_x: float = 1.0
    to_frame_y: float = 1.0


def letterbox(image: np.ndarray, size: int, out: np.ndarray) -> Letterbox:
    """Resize `image` so its longer side is `size` and write it centred into `out` (size x size x 3,
    already filled with the padding colour), as ultralytics' `LetterBox(center=True)` does."""
    height, width = image.shape[:2]
    scale = min(size / height, size / width)
    new_width, new_height = round(width * scale), round(height * scale)
    pad_x, pad_y = round((size - new_width) / 2 - 0.1), round((size - new_height) / 2 - 0.1)
    if (new_width, new_height) != (width, height):
        image = cv2.resize(image, (new_width, new_height), interpolation=cv2.INTER_LINEAR)
    out[pad_y : pad_y + new_height, pad_x : pad_x + new_width] = image
    return Letterbox(scale, pad_x, pad_y, width, height)


class YoloModel(OnnxModel[list[Letterbox]]):
    """Result per frame: `{"detections": [{"box": [x1, y1, x2, y2], "label", "score"}, ...]}` in frame pixels."""

    model_type: ClassVar[str] = "yolo"
    export_hint: ClassVar[str] = (
        "Export with `yolo export model=... format=onnx dynamic=True` (or imgsz equal to yolo.inputSize) and set yolo.inputSize to match."
    )

    @property
    def params(self) -> YoloParams:
        return cast(YoloParams, self.spec.params)

    def input_shape(self) -> tuple[int, int, int]:
        return 3, self.params.input_size, self.params.input_size

    def load(self, store: BucketSpec | None = None) -> None:
        super().load(store)
        shape = self._loaded_session().output_shapes()[0]
        classes = shape[1] - 4 if len(shape) == 3 and shape[1] is not None else None
        if len(shape) != 3 or (classes is not None and classes < 1):
            shown = ["?" if d is None else d for d in shape]
            raise ValueError(f"model {self.name!r}: output shape {shown} is not [N, 4 + classes, anchors]; {self.export_hint}")
        self._check_class_count(classes)

    def min_frame_size(self, frame_width: int, frame_height: int) -> FrameSize:
        # The letterbox shrinks the frame until its longer side is inputSize: that image, not a square, must be covered.
        scale = min(self.params.input_size / frame_width, self.params.input_size / frame_height)
        return round(frame_width * scale), round(frame_height * scale)

    def preprocess(self, images: list[np.ndarray], frame_sizes: Sequence[FrameSize] | None = None) -> tuple[np.ndarray, list[Letterbox]]:
        size = self.params.input_size
        batch = np.empty((len(images), 3, size, size), np.float32)
        canvas = np.empty((size, size, 3), np.uint8)
        placements = []
        for image, (frame_w, frame_h), planes in zip(images, frame_sizes_of(images, frame_sizes), batch, strict=True):
            canvas.fill(PAD_VALUE)
            placement = letterbox(image, size, canvas)
            if (frame_w, frame_h) != (placement.frame_width, placement.frame_height):
                to_x, to_y = frame_w / placement.frame_width, frame_h / placement.frame_height
                placement = replace(placement, frame_width=frame_w, frame_height=frame_h, to_frame_x=to_x, to_frame_y=to_y)
            placements.append(placement)
            blue, green, red = cv2.split(canvas)  # RGB planes, converted to float on the copy into the batch
            planes[0], planes[1], planes[2] = red, green, blue
        batch *= np.float32(1 / 255)
        return batch, placements

    def postprocess(self, outputs: list[np.ndarray], meta: list[Letterbox]) -> list[dict[str, Any]]:
        predictions = outputs[0]
        self._check_class_count(predictions.shape[1] - 4)
        return [self._decode(prediction, placement) for prediction, placement in zip(predictions, meta, strict=True)]

    def _decode(self, prediction: np.ndarray, placement: Letterbox) -> dict[str, Any]:
        params = self.params
        class_scores = prediction[4:]
        class_ids = class_scores.argmax(axis=0)
        scores = class_scores.max(axis=0)
        candidates = np.flatnonzero(scores >= params.score_threshold)
        cx, cy, w, h = prediction[:4, candidates].astype(np.float64)
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        scores, class_ids = scores[candidates], class_ids[candidates]
        keep = nms(boxes, scores, params.nms_iou_threshold, class_ids)[: params.max_detections]
        boxes, scores, class_ids = boxes[keep], scores[keep], class_ids[keep]

        to_x, to_y = placement.to_frame_x, placement.to_frame_y
        boxes[:, [0, 2]] = np.clip((boxes[:, [0, 2]] - placement.pad_x) / placement.scale * to_x, 0, placement.frame_width)
        boxes[:, [1, 3]] = np.clip((boxes[:, [1, 3]] - placement.pad_y) / placement.scale * to_y, 0, placement.frame_height)
        labels = [params.class_names[c] if params.class_names else str(c) for c in class_ids.tolist()]
        return detections(boxes, scores, labels)

    def _check_class_count(self, classes: int | None) -> None:
        names = self.params.class_names
        if classes is not None and names and classes != len(names):
            raise ValueError(f"model {self.name!r} outputs {classes} class scores but yolo.classNames lists {len(names)} names")
