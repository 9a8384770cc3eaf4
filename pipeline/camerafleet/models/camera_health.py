"""Camera tamper and health checks: is the view dark, covered or out of focus?

Runs the project's own statistics graph (`graphs.camera_health_graph`, or a file of it named by
`modelUri`) on frames shrunk to a fixed size, and turns brightness, contrast and Laplacian sharpness
into flags with the thresholds of the manifest's `CameraHealthParams`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, cast

import cv2
import numpy as np
import onnx

from camerafleet.api.manifest import CameraHealthParams
from camerafleet.models.base import FrameSize, OnnxModel, resize_to_planes
from camerafleet.models.graphs import camera_health_graph


class CameraHealthModel(OnnxModel[None]):
    """Result per frame: `{"health": {"brightness", "contrast", "sharpness"}, "flags": [...]}`.

    Flags, each set when its value is below the matching threshold: `dark` (brightness), `covered`
    (contrast: a uniform view such as a lens cap or a wall) and `blurred` (sharpness).
    """

    model_type: ClassVar[str] = "camera-health"
    export_hint: ClassVar[str] = "Use the graph written by `python -m camerafleet.models.prepare`, or leave modelUri empty."

    @property
    def params(self) -> CameraHealthParams:
        return cast(CameraHealthParams, self.spec.params)

    def builtin_graph(self) -> onnx.ModelProto:
        return camera_health_graph()

    def input_shape(self) -> tuple[int, int, int]:
        return 3, self.params.input_height, self.params.input_width

    def min_frame_size(self, frame_width: int, frame_height: int) -> FrameSize:
        # INTER_AREA averages the frame down to the input size; a DCT-scaled decode averages 8x8 blocks alike.
        return self.params.input_width, self.params.input_height

    def preprocess(self, images: list[np.ndarray], frame_sizes: Sequence[FrameSize] | None = None) -> tuple[np.ndarray, None]:
        width, height = self.params.input_width, self.params.input_height
        batch = np.empty((len(images), 3, height, width), np.float32)
        work = np.empty((height, width, 3), np.uint8)
        for image, planes in zip(images, batch, strict=True):
            resize_to_planes(image, (width, height), planes, cv2.INTER_AREA, rgb=False, work=work)
        return batch, None  # statistics of the whole view: nothing to map back to frame pixels

    def postprocess(self, outputs: list[np.ndarray], meta: None) -> list[dict[str, Any]]:
        params = self.params
        results = []
        for brightness, contrast, sharpness in outputs[0].tolist():
            flags = [
                flag
                for flag, value, limit in (
                    ("dark", brightness, params.dark_brightness_max),
                    ("covered", contrast, params.covered_contrast_max),
                    ("blurred", sharpness, params.blurred_sharpness_max),
                )
                if value < limit
            ]
            health = {"brightness": round(brightness, 3), "contrast": round(contrast, 3), "sharpness": round(sharpness, 3)}
            results.append({"health": health, "flags": flags})
        return results
