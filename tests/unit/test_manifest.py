"""The CameraFleet manifest: strict, with messages that name the field and the problem."""

from pathlib import Path

import pytest
import yaml

from camerafleet.api.manifest import ManifestError, load_manifest, parse_manifest
from camerafleet.topics import desired_configs, readers
from camerafleet_operator.validate import cluster_problems

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


def test_the_bucket_keeps_clips_as_long_as_asked_and_frames_alone_their_ttl():
    assert parse_manifest(fleet()).spec.bucket_retention_seconds() == 300  # no events, no clips
    spec = parse_manifest(fleet(events={"enabled": True})).spec
    assert spec.events.keeps_clips and spec.bucket_retention_seconds() == 7 * 86400
    spec = parse_manifest(fleet(events={"enabled": True, "clips": {"enabled": False}}, bucket={"ttlSeconds": 3600})).spec
    assert not spec.events.keeps_clips and spec.bucket_retention_seconds() == 3600
    assert "spec.events.clips.preRollSeconds" in problems(fleet(events={"enabled": True, "clips": {"preRollSeconds": 600}}))


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


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch, as `kubectl patch --type merge` applies it."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def test_the_cpu_only_overlay_keeps_the_production_layout_and_drops_only_gpus_and_sizes():
    """examples/overlays/cpu-only.yaml, the merge patch the e2e applies to the cluster example: heads still do no
    work, the models still run on the (tainted) GPU pool, and nothing but GPUs, sizes and that pool's selector changes."""
    cluster = yaml.safe_load((ROOT / "examples" / "cluster-fleet.yaml").read_text())
    patched = merge_patch(cluster, yaml.safe_load((ROOT / "examples" / "overlays" / "cpu-only.yaml").read_text()))
    spec, original = parse_manifest(patched).spec, parse_manifest(cluster).spec
    assert not spec.kubernetes.head_runs_work and not any(m.resources.gpus or m.resources.cpus > 1 for m in spec.models)
    assert spec.kubernetes.gpu_workers.tolerations == original.kubernetes.gpu_workers.tolerations
    assert spec.kubernetes.gpu_workers.node_selector == {"nvidia.com/gpu.present": "true"}
    assert cluster_problems("example", spec) == []
    keep = {"kubernetes": {"head", "job_workers", "gpu_workers"}}
    drop_sizes = [{**m, "resources": None} for m in spec.model_dump(exclude=keep)["models"]]
    assert drop_sizes == [{**m, "resources": None} for m in original.model_dump(exclude=keep)["models"]]
    assert spec.model_dump(exclude={**keep, "models": True}) == original.model_dump(exclude={**keep, "models": True})


def test_a_key_with_a_line_break_or_a_blank_is_quoted_in_the_error_so_each_problem_stays_on_its_line():
    doc = yaml.safe_load((ROOT / "examples" / "demo-fleet.yaml").read_text())
    doc["spec"]["bucket"] = {"\n": None, "a b": 1}
    with pytest.raises(ManifestError) as err:
        parse_manifest(doc, "fleet.yaml")
    lines = str(err.value).splitlines()
    assert "  - spec.bucket.'\\n': unknown field" in "\n".join(lines) and len(lines) == 3, lines
    assert any(line.startswith("  - spec.bucket.'a b': unknown field") for line in lines), lines


DOOR = {"name": "door", "points": [[640, 60], [640, 600]]}
DESK = {"name": "desk", "points": [[880, 120], [1180, 120], [1180, 320], [880, 320]], "loiterSeconds": 8, "anchor": "center"}


def test_zones_and_lines_need_the_events_stage_and_say_so():
    text = problems(fleet(cameras=[{"id": "1", "source": "synthetic:", "lines": [DOOR]}]))
    assert "camera 1 has zones or lines, which need the events stage: set events.enabled: true" in text
    spec = parse_manifest(
        fleet(cameras=[{"id": "1", "source": "synthetic:", "lines": [DOOR], "zones": [DESK]}], events={"enabled": True})
    ).spec
    assert spec.cameras[0].zones[0].anchor == "center" and spec.cameras[0].lines[0].anchor == "bottomCenter"
    topics = spec.topics()
    assert topics["camerafleet_events"] == topics["camerafleet_events.state"] == topics["camerafleet_events.tracks"] == 1
    assert desired_configs(spec, "camerafleet_events.tracks") == {"retention.ms": str(spec.kafka.retention_ms)}  # a live feed
    assert spec.kafka.events_group == "camerafleet.events"
    # Each group is started (at offset 0 of a new topic) only on what it reads.
    assert readers(spec) == {"camerafleet": {"camera_1"}, "camerafleet.events": {"camerafleet_results"}}


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ({"zones": [{"name": "z", "points": [[0, 0], [100, 100], [100, 0], [0, 100]]}]}, "zone 'z': edges 1 and 3 cross each other"),
        ({"zones": [{"name": "z", "points": [[0, 0], [10, 10], [20, 20]]}]}, "zone 'z': the polygon's area is 0 px²"),
        ({"zones": [{"name": "z", "points": [[0, 0], [10, 10]]}]}, "spec.cameras.0.zones.0.points"),
        ({"lines": [{"name": "l", "points": [[5, 5], [6, 6]]}]}, "line 'l': the line is shorter than 4 px"),
        ({"lines": [{"name": "l", "points": [[5, 5], [60, 60], [90, 90]]}]}, "spec.cameras.0.lines.0.points"),
        ({"lines": [DOOR], "zones": [{**DESK, "name": "door"}]}, "zone and line names must be unique; more than once: door"),
        ({"lines": [{**DOOR, "models": ["people"]}]}, "camera 1, 'door': no model named people in this fleet"),
    ],
)
def test_bad_zones_and_lines_are_refused_with_what_is_wrong(shape, message):
    text = problems(fleet(cameras=[{"id": "1", "source": "synthetic:", **shape}], events={"enabled": True}))
    assert message in text, text
