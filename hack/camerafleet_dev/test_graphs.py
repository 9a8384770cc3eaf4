"""The YOLO stand-in model of the tests: `python -m camerafleet_dev.test_graphs --out models`.

No YOLO weights can be downloaded here, so the YOLO code path is tested with a graph in YOLOv8/YOLO11
export format whose output is a known constant: decoding, NMS and the mapping of boxes back to frame
pixels are then checked exactly. It never ships: it lives with the development tools.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from camerafleet.models.graphs import onnx_model
from camerafleet.models.prepare import write_if_changed

YOLO_INPUT = "images"
YOLO_OUTPUT = "output0"

YoloTestBox = tuple[float, float, float, float, int, float]
"""(cx, cy, w, h, class_id, score) of one anchor, in input pixels."""

YOLO_TEST_CLASSES = 3
YOLO_TEST_INPUT_SIZE = 640
YOLO_TEST_BOXES: list[YoloTestBox] = [
    (320.0, 320.0, 200.0, 100.0, 0, 0.9),
    (160.0, 240.0, 64.0, 128.0, 2, 0.6),
]
"""The boxes `yolo_test.onnx` reports for every image."""


def yolo_test_graph(boxes: Sequence[YoloTestBox], num_classes: int, input_size: int = 640, num_anchors: int = 8400) -> onnx.ModelProto:
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
    return onnx_model(graph)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m camerafleet_dev.test_graphs", description="Write yolo_test.onnx, the tests' YOLO stand-in."
    )
    parser.add_argument("--out", type=Path, default=Path("models"), help="directory to write into (default: ./models)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    graph = yolo_test_graph(YOLO_TEST_BOXES, YOLO_TEST_CLASSES, YOLO_TEST_INPUT_SIZE)
    write_if_changed(args.out / "yolo_test.onnx", graph.SerializeToString())
    return 0


if __name__ == "__main__":
    sys.exit(main())
