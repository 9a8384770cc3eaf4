"""The CameraFleet manifest: strict, with messages that name the field and the problem."""

from pathlib import Path

import pytest

from camerafleet.api.manifest import ManifestError, load_manifest, parse_manifest

ROOT = Path(__file__).resolve().parents[2]


def fleet(**spec_overrides):
    spec = {
        "cameras": [{"id": "1", "source": "synthetic:"}, {"id": "2", "source": "synthetic:"}],
        "models": [{"name": "health", "type": "camera-health"}],
    }
    spec.update(spec_overrides)
    return {"apiVersion": "camerafleet.io/v1alpha1", "kind": "CameraFleet", "metadata": {"name": "t"}, "spec": spec}


def problems(data) -> str:
    with pytest.raises(ManifestError) as info:
        parse_manifest(data, "fleet.yaml")
    return str(info.value)


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_examples_are_valid(path):
    assert load_manifest(path).spec.cameras


def test_the_small_node_example_is_the_cluster_example_resized():
    """What the README tells small-node users to apply differs from the cluster example only in sizes."""
    cluster, small = (load_manifest(ROOT / "examples" / name).spec for name in ("cluster-fleet.yaml", "small-node-fleet.yaml"))

    def without_sizes(spec):
        data = spec.model_dump(exclude={"kubernetes": {"head", "head_runs_work", "job_workers", "gpu_workers"}})
        for model in data["models"]:
            del model["resources"], model["autoscaling"]["max_replicas"]
        return data

    assert without_sizes(small) == without_sizes(cluster)
    assert small.kubernetes.head_runs_work and not any(m.resources.gpus for m in small.models)


def test_defaults_fill_in():
    spec = parse_manifest(fleet()).spec
    assert spec.cameras[0].inference_fps == 5
    assert spec.bucket.ttl_seconds == 300
    assert spec.topic("1") == "camera_1"
    assert spec.models[0].params.dark_brightness_max == 40
    assert spec.models[0].batching.effective_max_ongoing_requests >= spec.models[0].batching.max_batch_size


def test_unknown_field_is_named():
    text = problems(fleet(cameras=[{"id": "1", "source": "synthetic:", "fps": 3}]))
    assert "spec.cameras.0.fps" in text and "unknown field" in text


def test_negative_fps():
    text = problems(fleet(cameras=[{"id": "1", "source": "synthetic:", "inferenceFps": -1}]))
    assert "spec.cameras.0.inferenceFps" in text and "greater than 0" in text


def test_duplicate_camera_ids():
    text = problems(fleet(cameras=[{"id": "7", "source": "synthetic:"}, {"id": "7", "source": "synthetic:"}]))
    assert "duplicate camera ids: 7" in text


def test_no_models():
    assert "spec.models" in problems(fleet(models=[]))


def test_detector_needs_model_uri():
    assert "needs `modelUri`" in problems(fleet(models=[{"name": "f", "type": "face"}]))


def test_params_must_match_type():
    text = problems(fleet(models=[{"name": "h", "type": "camera-health", "yolo": {}}]))
    assert "sets `yolo`" in text


def test_batches_must_be_able_to_fill():
    model = {"name": "h", "type": "camera-health", "batching": {"maxBatchSize": 16, "maxOngoingRequests": 4}}
    text = problems(fleet(models=[model]))
    assert "maxOngoingRequests (4) is smaller than maxBatchSize (16)" in text


def test_replica_bounds_are_ordered():
    model = {"name": "h", "type": "camera-health", "autoscaling": {"minReplicas": 3, "maxReplicas": 2}}
    assert "minReplicas (3) is larger than maxReplicas (2)" in problems(fleet(models=[model]))


def test_every_problem_is_listed():
    text = problems(fleet(cameras=[{"id": "Bad Id!", "source": ""}]))
    assert "spec.cameras.0.id" in text and "spec.cameras.0.source" in text


def test_wrong_kind_and_bad_yaml(tmp_path):
    assert "kind" in problems({**fleet(), "kind": "Pod"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("spec: [unclosed")
    with pytest.raises(ManifestError, match="not valid YAML"):
        load_manifest(bad)
    with pytest.raises(ManifestError, match="cannot read"):
        load_manifest(tmp_path / "missing.yaml")


def test_relative_paths_become_absolute(tmp_path):
    data = fleet(
        cameras=[{"id": "1", "source": "clips/a.mp4"}, {"id": "2", "source": "rtsp://cam/stream"}],
        models=[{"name": "f", "type": "face", "modelUri": "models/c.onnx"}, {"name": "y", "type": "yolo", "modelUri": "s3://b/y.onnx"}],
    )
    spec = parse_manifest(data).spec.with_absolute_paths(tmp_path)
    assert spec.cameras[0].source == str(tmp_path / "clips/a.mp4")
    assert spec.cameras[1].source == "rtsp://cam/stream"
    assert spec.models[0].model_uri == str(tmp_path / "models/c.onnx")
    assert spec.models[1].model_uri == "s3://b/y.onnx"


def test_a_secret_cameras_source_stays_a_name(tmp_path):
    """With sourceSecretEnv, `source` only names the camera in logs: it is not made into a path."""
    data = fleet(cameras=[{"id": "1", "source": "lobby-entrance", "sourceSecretEnv": "LOBBY_URL"}, {"id": "2", "source": "clips/a.mp4"}])
    spec = parse_manifest(data).spec.with_absolute_paths(tmp_path)
    assert spec.cameras[0].source == "lobby-entrance"
    assert spec.cameras[1].source == str(tmp_path / "clips/a.mp4")


def test_numbers_must_be_finite_and_64_bit():
    assert "spec.kafka.retentionMs" in problems(fleet(kafka={"retentionMs": 2**63}))
    model = {"name": "h", "type": "camera-health", "cameraHealth": {"blurredSharpnessMax": float("inf")}}
    assert "spec.models.0.cameraHealth.blurredSharpnessMax: Input should be a finite number" in problems(fleet(models=[model]))


def test_an_unknown_literal_shows_the_value_given():
    text = problems(fleet(models=[{"name": "r", "type": "resnet", "modelUri": "r.onnx"}]))
    assert "spec.models.0.type: Input should be 'face', 'yolo' or 'camera-health' (got 'resnet')" in text


def test_metadata_extras_that_json_cannot_carry_are_refused_naming_the_key():
    doc = {
        "apiVersion": "camerafleet.io/v1alpha1",
        "kind": "CameraFleet",
        "metadata": {"name": "f", "labels": {"x": float("inf")}},
        "spec": {"cameras": [{"id": "1", "source": "synthetic:"}], "models": [{"name": "m", "type": "camera-health"}]},
    }
    with pytest.raises(ManifestError, match=r"metadata\.labels"):
        parse_manifest(doc)
