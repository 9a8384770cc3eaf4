"""ONNX graphs the project builds itself instead of downloading.

`camera_health_graph` is the production tamper-check model (brightness, contrast and sharpness of
each frame, computed by onnxruntime like any other model). `yolo_test_graph` is a stand-in for a YOLO
export whose output is a known constant, so decoding, NMS and box mapping can be checked exactly
without real weights. Both are pure functions of their arguments, so saved files are reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # The IR version that introduced opset 17; every onnxruntime since 1.13 loads it.

# ITU-R BT.601 luma weights in the BGR channel order of OpenCV frames.
GREY_WEIGHTS_BGR = (0.114, 0.587, 0.299)
LAPLACIAN_3X3 = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))

HEALTH_INPUT = "frames"
HEALTH_OUTPUT = "health"
YOLO_INPUT = "images"
YOLO_OUTPUT = "output0"

YoloTestBox = tuple[float, float, float, float, int, float]
"""(cx, cy, w, h, class_id, score) of one anchor, in input pixels."""


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="camerafleet")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def camera_health_graph() -> onnx.ModelProto:
    """Per-frame image statistics: input `frames` [N, 3, H, W] float32 BGR 0-255, output `health` [N, 3].

    The columns are brightness (mean grey level), contrast (standard deviation of grey) and sharpness
    (variance of the 3x3 Laplacian of grey over the valid region, so H and W must be at least 3).
    Grey is 0.114 B + 0.587 G + 0.299 R.
    """
    weights = [
        numpy_helper.from_array(np.array(GREY_WEIGHTS_BGR, dtype=np.float32).reshape(1, 3, 1, 1), "grey_weights"),
        numpy_helper.from_array(np.array(LAPLACIAN_3X3, dtype=np.float32).reshape(1, 1, 3, 3), "laplacian_kernel"),
    ]
    nodes = [helper.make_node("Conv", [HEALTH_INPUT, "grey_weights"], ["grey"])]
    nodes += _mean_and_variance("grey", "brightness", "grey_variance")
    nodes.append(helper.make_node("Sqrt", ["grey_variance"], ["contrast"]))
    nodes.append(helper.make_node("Conv", ["grey", "laplacian_kernel"], ["laplacian"]))
    nodes += _mean_and_variance("laplacian", "laplacian_mean", "sharpness")
    # Each statistic is [N, 1, 1, 1]; flatten to [N, 1] and put them side by side.
    for stat in ("brightness", "contrast", "sharpness"):
        nodes.append(helper.make_node("Flatten", [stat], [f"{stat}_column"], axis=1))
    nodes.append(helper.make_node("Concat", ["brightness_column", "contrast_column", "sharpness_column"], [HEALTH_OUTPUT], axis=1))
    graph = helper.make_graph(
        nodes,
        "camerafleet_camera_health",
        [helper.make_tensor_value_info(HEALTH_INPUT, TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info(HEALTH_OUTPUT, TensorProto.FLOAT, ["N", 3])],
        initializer=weights,
    )
    return _model(graph)


def _mean_and_variance(x: str, mean: str, variance: str) -> list[onnx.NodeProto]:
    """Nodes computing the mean and population variance of `x` [N, 1, H, W] over H and W, kept [N, 1, 1, 1]."""
    return [
        helper.make_node("ReduceMean", [x], [mean], axes=[2, 3], keepdims=1),
        helper.make_node("Sub", [x, mean], [f"{x}_centred"]),
        helper.make_node("Mul", [f"{x}_centred", f"{x}_centred"], [f"{x}_squared"]),
        helper.make_node("ReduceMean", [f"{x}_squared"], [variance], axes=[2, 3], keepdims=1),
    ]


def yolo_test_graph(
    boxes: Sequence[YoloTestBox], num_classes: int, input_size: int = 640, num_anchors: int = 8400
) -> onnx.ModelProto:
    """A graph in YOLOv8/YOLO11 export format whose output is the same known tensor for every image.

    Input `images` [N, 3, input_size, input_size]; output `output0` [N, 4 + num_classes, num_anchors]
    where anchor i holds boxes[i] (cx, cy, w, h, then `score` in row 4 + class_id) and every other
    anchor and class score is zero. The batch size is taken from the input's shape.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    if len(boxes) > num_anchors:
        raise ValueError(f"{len(boxes)} boxes do not fit in {num_anchors} anchors")
    table = np.zeros((1, 4 + num_classes, num_anchors), dtype=np.float32)
    for anchor, (cx, cy, w, h, class_id, score) in enumerate(boxes):
        if not 0 <= class_id < num_classes:
            raise ValueError(f"box {anchor} has class_id {class_id}, outside 0..{num_classes - 1}")
        if not 0.0 <= score <= 1.0:
            raise ValueError(f"box {anchor} has score {score}, outside 0..1")
        table[0, :4, anchor] = (cx, cy, w, h)
        table[0, 4 + class_id, anchor] = score
    nodes = [
        helper.make_node("Shape", [YOLO_INPUT], ["input_shape"], start=0, end=1),
        helper.make_node("Concat", ["input_shape", "ones"], ["repeats"], axis=0),
        helper.make_node("Tile", ["table", "repeats"], [YOLO_OUTPUT]),
    ]
    graph = helper.make_graph(
        nodes,
        "camerafleet_yolo_test",
        [helper.make_tensor_value_info(YOLO_INPUT, TensorProto.FLOAT, ["N", 3, input_size, input_size])],
        [helper.make_tensor_value_info(YOLO_OUTPUT, TensorProto.FLOAT, ["N", 4 + num_classes, num_anchors])],
        initializer=[numpy_helper.from_array(table, "table"), numpy_helper.from_array(np.ones(2, dtype=np.int64), "ones")],
    )
    return _model(graph)
