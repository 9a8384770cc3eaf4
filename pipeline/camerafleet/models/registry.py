"""Which class serves each manifest model `type`.

Adding a model type takes one module with an `OnnxModel` subclass and one entry here (plus the type
and its parameters in the manifest).
"""

from __future__ import annotations

from camerafleet.api.manifest import ModelSpec
from camerafleet.models.base import OnnxModel
from camerafleet.models.camera_health import CameraHealthModel
from camerafleet.models.face import FaceModel
from camerafleet.models.yolo import YoloModel

MODEL_TYPES: dict[str, type[OnnxModel]] = {cls.model_type: cls for cls in (FaceModel, YoloModel, CameraHealthModel)}


def create_model(spec: ModelSpec) -> OnnxModel:
    """An unloaded model for `spec`; call `load()` on it where it will run."""
    try:
        model_class = MODEL_TYPES[spec.type]
    except KeyError:
        raise ValueError(f"model {spec.name!r} has unknown type {spec.type!r}; known types: {', '.join(sorted(MODEL_TYPES))}") from None
    return model_class(spec)
