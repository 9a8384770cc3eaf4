"""Unit tests of `camerafleet.models`: decoding, NMS and box mapping, health statistics, CenterFace on a
real photo, execution-provider choice, model-file resolution and the prepare tool. No Kafka or Ray."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import cv2
import numpy as np
import onnxruntime as ort
import pytest
from skimage import data

from camerafleet import s3_client as s3
from camerafleet.api.manifest import BucketSpec, ModelSpec, ResourcesSpec
from camerafleet.api.settings import Settings
from camerafleet.models import fetch, prepare
from camerafleet.models.appearance import similarity, vector
from camerafleet.models.boxes import nms
from camerafleet.models.camera_health import CameraHealthModel
from camerafleet.models.engines import GpuUnavailable, intra_op_threads
from camerafleet.models.engines.onnxruntime_engine import CPU_PROVIDER, CUDA_PROVIDER, choose_providers
from camerafleet.models.face import FaceModel
from camerafleet.models.graphs import camera_health_graph
from camerafleet.models.registry import MODEL_TYPES, create_model
from camerafleet.models.yolo import YoloModel
from camerafleet_dev import test_graphs
from camerafleet_dev.test_graphs import yolo_test_graph

REPO_ROOT = Path(__file__).resolve().parents[2]


def astronaut_bgr() -> np.ndarray:
    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def loaded(model_type: str, model_uri: str | None = None, **fields: Any) -> Any:
    model = create_model(ModelSpec(name="test-model", type=model_type, model_uri=model_uri, **fields))
    model.load()
    return model


# --- YOLO ---------------------------------------------------------------------------------------

CLASS_NAMES = ["person", "car", "dog"]
YOLO_BOXES = [
    (320.0, 320.0, 200.0, 100.0, 0, 0.9),  # kept
    (330.0, 325.0, 200.0, 100.0, 0, 0.8),  # same class, IoU ~0.8 with the first: suppressed
    (325.0, 322.0, 180.0, 90.0, 1, 0.7),  # overlaps the first but another class: kept
    (600.0, 150.0, 100.0, 40.0, 1, 0.5),  # reaches into the padding and past the right edge: clipped
    (100.0, 200.0, 50.0, 60.0, 2, 0.3),  # just above the threshold: kept
    (500.0, 500.0, 40.0, 40.0, 2, 0.2),  # below the threshold: dropped
]
EXPECTED_YOLO = [(0, 0.9), (2, 0.7), (3, 0.5), (4, 0.3)]  # (index into YOLO_BOXES, score), score order


def letterbox_to_frame(box: tuple[float, ...], width: int, height: int, size: int = 640) -> list[float]:
    """Expected frame-pixel xyxy of an input-pixel cxcywh box, from the letterbox arithmetic."""
    scale = min(size / width, size / height)
    pad_x = round((size - round(width * scale)) / 2 - 0.1)
    pad_y = round((size - round(height * scale)) / 2 - 0.1)
    cx, cy, w, h = box[:4]
    return [
        min(max((cx - w / 2 - pad_x) / scale, 0), width),
        min(max((cy - h / 2 - pad_y) / scale, 0), height),
        min(max((cx + w / 2 - pad_x) / scale, 0), width),
        min(max((cy + h / 2 - pad_y) / scale, 0), height),
    ]


@pytest.fixture(scope="module")
def yolo_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("yolo") / "yolo_test.onnx"
    path.write_bytes(yolo_test_graph(YOLO_BOXES, num_classes=3, input_size=640, num_anchors=64).SerializeToString())
    return str(path)


def test_yolo_decodes_nms_and_maps_boxes_to_each_frame(yolo_file: str) -> None:
    model = loaded("yolo", yolo_file, yolo={"classNames": CLASS_NAMES, "scoreThreshold": 0.25})
    sizes = [(1280, 720), (640, 480), (333, 197)]
    results = model.infer([np.zeros((h, w, 3), np.uint8) for w, h in sizes])
    json.dumps(results)
    assert len(results) == len(sizes)
    for (width, height), result in zip(sizes, results, strict=True):
        found = result["detections"]
        assert [(d["label"], d["score"]) for d in found] == [(CLASS_NAMES[YOLO_BOXES[i][4]], s) for i, s in EXPECTED_YOLO]
        for detection, (index, _) in zip(found, EXPECTED_YOLO, strict=True):
            assert detection["box"] == pytest.approx(letterbox_to_frame(YOLO_BOXES[index], width, height), abs=0.01)
    assert results[0]["detections"][2]["box"] == [1100.0, 0.0, 1280.0, 60.0]  # 720p: clipped at the top padding and right edge


def test_yolo_without_class_names_labels_by_index_and_caps_detections(yolo_file: str) -> None:
    model = loaded("yolo", yolo_file, yolo={"maxDetections": 2})
    [result] = model.infer([np.zeros((480, 640, 3), np.uint8)])
    assert [(d["label"], d["score"]) for d in result["detections"]] == [("0", 0.9), ("1", 0.7)]


def test_yolo_score_threshold(yolo_file: str) -> None:
    model = loaded("yolo", yolo_file, yolo={"scoreThreshold": 0.6})
    [result] = model.infer([np.zeros((480, 640, 3), np.uint8)])
    assert [d["score"] for d in result["detections"]] == [0.9, 0.7]


def test_yolo_letterbox_pads_grey_and_converts_to_rgb() -> None:
    model = create_model(ModelSpec(name="y", type="yolo", model_uri="unused.onnx"))
    frame = np.zeros((320, 640, 3), np.uint8)
    frame[:] = (255, 0, 0)  # pure blue in BGR
    batch, [placement] = model.preprocess([frame])
    assert batch.shape == (1, 3, 640, 640) and batch.dtype == np.float32
    assert (placement.scale, placement.pad_x, placement.pad_y) == (1.0, 0, 160)
    assert batch[0, :, 0, 0] == pytest.approx([114 / 255] * 3)
    assert batch[0, :, 320, 320] == pytest.approx([0.0, 0.0, 1.0])  # RGB order


def test_yolo_rejects_class_names_that_do_not_match_the_output(yolo_file: str) -> None:
    with pytest.raises(ValueError, match=r"outputs 3 class scores but yolo\.classNames lists 2 names"):
        loaded("yolo", yolo_file, yolo={"classNames": ["a", "b"]})


def test_model_input_size_must_match_parameters(tmp_path: Path) -> None:
    path = tmp_path / "small.onnx"
    path.write_bytes(yolo_test_graph(YOLO_BOXES, 3, input_size=320, num_anchors=8).SerializeToString())
    with pytest.raises(ValueError, match=r"H is 320 but the parameters give 640.*yolo export"):
        loaded("yolo", str(path))


def test_yolo_test_graph_tiles_over_the_batch() -> None:
    session = ort.InferenceSession(yolo_test_graph(YOLO_BOXES[:2], 3, 64, 4).SerializeToString())
    [out] = session.run(None, {"images": np.zeros((3, 3, 64, 64), np.float32)})
    assert out.shape == (3, 7, 4)
    assert out[2, :, 1].tolist() == pytest.approx([330, 325, 200, 100, 0.8, 0, 0])
    assert not out[:, :, 2:].any()


def test_nms_is_class_aware_and_keeps_score_order() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [20, 20, 30, 30]], dtype=np.float64)
    scores = np.array([0.5, 0.9, 0.8, 0.1])
    assert nms(boxes, scores, 0.5).tolist() == [1, 3]
    assert nms(boxes, scores, 0.5, classes=np.array([0, 0, 1, 0])).tolist() == [1, 2, 3]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


# --- camera health ------------------------------------------------------------------------------


def reference_health(frame_chw: np.ndarray) -> list[float]:
    b, g, r = frame_chw.astype(np.float64)
    grey = 0.114 * b + 0.587 * g + 0.299 * r
    laplacian = grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4 * grey[1:-1, 1:-1]
    return [grey.mean(), grey.std(), laplacian.var()]


def test_camera_health_graph_matches_numpy() -> None:
    session = ort.InferenceSession(camera_health_graph().SerializeToString())
    rng = np.random.default_rng(7)
    for shape in [(2, 3, 180, 320), (1, 3, 5, 7)]:
        frames = rng.uniform(0, 255, shape).astype(np.float32)
        [out] = session.run(None, {"frames": frames})
        assert out.shape == (shape[0], 3)
        for got, frame in zip(out, frames, strict=True):
            assert got == pytest.approx(reference_health(frame), rel=1e-4)


def test_camera_health_flags() -> None:
    model = loaded("camera-health")
    sharp = astronaut_bgr()
    frames = [
        np.zeros((720, 1280, 3), np.uint8),
        np.full((480, 640, 3), 128, np.uint8),
        cv2.GaussianBlur(sharp, (0, 0), sigmaX=8),
        sharp,
    ]
    black, grey, blurred, clear = model.infer(frames)
    json.dumps([black, grey, blurred, clear])
    assert {"dark", "covered"} <= set(black["flags"])
    assert "covered" in grey["flags"] and "dark" not in grey["flags"]
    assert grey["health"]["brightness"] == pytest.approx(128, abs=0.01)
    assert blurred["flags"] == ["blurred"]
    assert clear["flags"] == []
    batch, _ = model.preprocess([sharp])
    expected = reference_health(batch[0])
    assert [clear["health"][k] for k in ("brightness", "contrast", "sharpness")] == pytest.approx(expected, rel=1e-4)


def test_camera_health_from_file_and_thresholds(tmp_path: Path) -> None:
    path = tmp_path / "camera_health.onnx"
    path.write_bytes(camera_health_graph().SerializeToString())
    model = loaded("camera-health", str(path), cameraHealth={"darkBrightnessMax": 200, "blurredSharpnessMax": 0})
    [result] = model.infer([astronaut_bgr()])
    assert result["flags"] == ["dark"]


# --- CenterFace ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def centerface_path() -> str:
    prepared = REPO_ROOT / "models" / "centerface.onnx"
    if prepared.is_file():
        return str(prepared)
    return str(prepare.prepare(Path.home() / ".cache" / "camerafleet" / "models-prep")["centerface.onnx"])


def test_face_finds_the_astronaut(centerface_path: str) -> None:
    model = loaded("face", centerface_path)
    [result] = model.infer([astronaut_bgr()])
    json.dumps(result)
    [face] = result["detections"]
    x1, y1, x2, y2 = face["box"]
    assert face["label"] == "face" and face["score"] > 0.5
    assert x1 < 200 and x2 > 250 and y1 < 90 and y2 > 150  # covers eyes to chin (the face spans about x 185-265, y 70-160)
    assert (x2 - x1) * (y2 - y1) < 200 * 200
    assert len(face["landmarks"]) == 5
    assert all(x1 <= x <= x2 and y1 <= y <= y2 for x, y in face["landmarks"])


def test_face_batch_of_different_sizes(centerface_path: str) -> None:
    model = loaded("face", centerface_path)
    photo = astronaut_bgr()
    small, wide, blank = model.infer([photo, cv2.resize(photo, (1280, 720)), np.full((300, 400, 3), 90, np.uint8)])
    assert blank == {"detections": []}
    [face_small], [face_wide] = small["detections"], wide["detections"]
    stretch = [1280 / 512, 720 / 512] * 2
    assert face_wide["box"] == pytest.approx([v * s for v, s in zip(face_small["box"], stretch, strict=True)], abs=4)
    # Each box is described where the frame is (the trackers know a face again by it): alike at both sizes.
    small_look, wide_look = vector(face_small["appearance"]), vector(face_wide["appearance"])
    assert small_look is not None and wide_look is not None and similarity(small_look, wide_look) > 0.9


# --- base: providers, threads, inputs -----------------------------------------------------------


def test_provider_choice() -> None:
    assert choose_providers(ResourcesSpec(gpus=0), [CUDA_PROVIDER, CPU_PROVIDER])[0] == [CPU_PROVIDER]
    assert choose_providers(ResourcesSpec(gpus=1), [CUDA_PROVIDER, CPU_PROVIDER])[0] == [CUDA_PROVIDER, CPU_PROVIDER]
    with pytest.raises(GpuUnavailable, match="gpus=1 requested but onnxruntime has no CUDA provider"):
        choose_providers(ResourcesSpec(gpus=1), [CPU_PROVIDER])


def test_a_gpu_model_without_cuda_fails_its_start_instead_of_running_on_cpu() -> None:
    """This machine has no GPU: onnxruntime (CPU build) has no CUDA provider, so the start fails, naming the model and the fix."""
    with pytest.raises(GpuUnavailable, match=r"model 'test-model'.*gpus=1 requested.*onnxruntime-gpu"):
        loaded("camera-health", resources={"gpus": 1})


def test_cpu_only_logs_info(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="camerafleet.models"):
        loaded("camera-health")
    [record] = [r for r in caplog.records if r.name == "camerafleet.models"]
    assert record.levelno == logging.INFO and "gpus=0 requested; using CPU" in record.getMessage()


def test_intra_op_threads_round_up_cpus() -> None:
    assert [intra_op_threads(ResourcesSpec(cpus=c)) for c in (0, 0.5, 1, 2.5)] == [1, 1, 1, 3]


def test_infer_checks_state_and_inputs() -> None:
    model = create_model(ModelSpec(name="h", type="camera-health"))
    with pytest.raises(RuntimeError, match="call load\\(\\) first"):
        model.infer([np.zeros((10, 10, 3), np.uint8)])
    model.load()
    assert model.infer([]) == []
    with pytest.raises(ValueError, match="image 1 of the batch is a float32 array of shape \\(10, 10, 3\\)"):
        model.infer([np.zeros((10, 10, 3), np.uint8), np.zeros((10, 10, 3), np.float32)])
    with pytest.raises(ValueError, match="image 0 of the batch is a uint8 array of shape \\(10, 10\\)"):
        model.infer([np.zeros((10, 10), np.uint8)])


def test_model_with_fixed_batch_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fixed.onnx"
    graph = camera_health_graph()
    graph.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 10
    path.write_bytes(graph.SerializeToString())
    with pytest.raises(ValueError, match=r"batch dimension is fixed at 10.*camerafleet.models.prepare"):
        loaded("camera-health", str(path))


def test_registry() -> None:
    assert {"face": FaceModel, "yolo": YoloModel, "camera-health": CameraHealthModel} == MODEL_TYPES
    for model_type, cls in MODEL_TYPES.items():
        assert type(create_model(ModelSpec(name="m", type=model_type, model_uri="m.onnx"))) is cls
    with pytest.raises(ValueError, match="has type 'yolo'; FaceModel serves 'face'"):
        FaceModel(ModelSpec(name="m", type="yolo", model_uri="m.onnx"))


def test_package_import_is_light() -> None:
    code = "import sys, camerafleet.models; print(sorted({'onnxruntime', 'cv2', 'onnx'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


# --- model files ----------------------------------------------------------------------------------


def test_missing_or_unsupported_model_files(tmp_path: Path) -> None:
    with pytest.raises(fetch.ModelFileError, match="does not exist"):
        loaded("yolo", str(tmp_path / "nope.onnx"))
    with pytest.raises(fetch.ModelFileError, match="unsupported scheme 'gs'"):
        fetch.resolve_model_uri("gs://bucket/model.onnx")
    with pytest.raises(fetch.ModelFileError, match="s3://bucket/key"):
        fetch.resolve_model_uri("s3://bucket-only")
    with pytest.raises(fetch.ModelFileError, match="must not leave the model cache"):
        fetch.resolve_model_uri("s3://bucket/../../etc/model.onnx")


class FakeMinio:
    """Stands in for `minio.Minio`: one object whose ETag the test can change."""

    instances: ClassVar[list[FakeMinio]] = []
    content = b"model bytes"
    etag = "v1"

    def __init__(self, endpoint: str, **kwargs: Any) -> None:
        self.endpoint, self.kwargs, self.downloads = endpoint, kwargs, 0
        FakeMinio.instances.append(self)

    def stat_object(self, bucket: str, key: str) -> SimpleNamespace:
        return SimpleNamespace(etag=FakeMinio.etag)

    def get_object(self, bucket: str, key: str) -> SimpleNamespace:
        self.downloads += 1
        return SimpleNamespace(stream=lambda size: iter([FakeMinio.content]), close=lambda: None, release_conn=lambda: None)


def test_s3_models_are_downloaded_once_per_etag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3, "Minio", FakeMinio)
    settings = Settings.from_env({"CAMERAFLEET_MODEL_CACHE": str(tmp_path), "AWS_ACCESS_KEY_ID": "key", "AWS_SECRET_ACCESS_KEY": "secret"})
    store = BucketSpec(uri="s3://frames/f", endpoint="http://127.0.0.1:9000")
    FakeMinio.instances = []

    path = fetch.resolve_model_uri("s3://models/yolo/v1.onnx", store, settings)
    assert path == tmp_path / "models" / "yolo" / "v1.onnx" and path.read_bytes() == b"model bytes"
    client = FakeMinio.instances[0]
    assert client.endpoint == "127.0.0.1:9000" and client.kwargs["secure"] is False
    assert (client.kwargs["access_key"], client.kwargs["secret_key"]) == ("key", "secret")

    assert fetch.resolve_model_uri("s3://models/yolo/v1.onnx", store, settings) == path
    assert FakeMinio.instances[1].downloads == 0  # cached, ETag unchanged

    monkeypatch.setattr(FakeMinio, "etag", "v2")
    monkeypatch.setattr(FakeMinio, "content", b"new bytes")
    assert fetch.resolve_model_uri("s3://models/yolo/v1.onnx", store, settings).read_bytes() == b"new bytes"
    assert sorted(p.name for p in path.parent.iterdir()) == ["v1.onnx", "v1.onnx.etag"]  # no partial files left


def test_s3_endpoint_must_be_a_url() -> None:
    settings = Settings.from_env({"AWS_ACCESS_KEY_ID": "key", "AWS_SECRET_ACCESS_KEY": "secret"})
    with pytest.raises(fetch.ModelFileError, match="'minio:9000' must look like http"):
        fetch.resolve_model_uri("s3://models/m.onnx", BucketSpec(endpoint="minio:9000"), settings)


def test_s3_models_need_credentials() -> None:
    with pytest.raises(fetch.ModelFileError, match="AWS_ACCESS_KEY_ID"):
        fetch.resolve_model_uri("s3://models/m.onnx", BucketSpec(endpoint="http://127.0.0.1:9000"), Settings.from_env({}))


# --- prepare --------------------------------------------------------------------------------------


def test_prepare_is_idempotent(centerface_path: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "models"
    out.mkdir()
    (out / "centerface.onnx").write_bytes(Path(centerface_path).read_bytes())
    assert prepare.main(["--out", str(out)]) == 0
    assert prepare.main(["--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("centerface.onnx: up to date")
    assert lines[-2:] == [f"{out / name}: up to date" for name in ("centerface.onnx", "camera_health.onnx")]
    health = loaded("camera-health", str(out / "camera_health.onnx"))
    assert health.infer([np.zeros((20, 20, 3), np.uint8)])[0]["health"]["brightness"] == 0


def test_the_yolo_stand_in_reports_its_known_boxes(tmp_path: Path) -> None:
    assert test_graphs.main(["--out", str(tmp_path)]) == 0
    yolo = loaded("yolo", str(tmp_path / "yolo_test.onnx"))
    assert len(yolo.infer([np.zeros((640, 640, 3), np.uint8)])[0]["detections"]) == len(test_graphs.YOLO_TEST_BOXES)


def test_prepare_explains_a_failed_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    failed = subprocess.CompletedProcess(args=[], returncode=1, stdout="", stderr="Could not find a version")
    monkeypatch.setattr(prepare.subprocess, "run", lambda *args, **kwargs: failed)
    assert prepare.main(["--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "PyPI" in err and "must be reachable" in err and "Could not find a version" in err
