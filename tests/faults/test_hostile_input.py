"""Hostile input that reaches CameraFleet without any server: manifests, YAML, oversized batches.

A manifest is written by people and, on Kubernetes, by anyone allowed to create a CameraFleet, so the
parser must turn anything it is given into either a valid fleet or a `ManifestError` whose text names
the offending field, and a valid fleet must only hold values every consumer of it can represent (Kafka
configs and Kubernetes integers are 64-bit, JSON has no infinity). Hypothesis throws arbitrary
documents, arbitrary YAML text and single mutations of valid manifests at the parser; the inference
ingress gets a batch over its limit. Frame messages, JPEG bombs and frame URIs are fuzzed in
tests/unit/test_messages.py, test_imaging.py and test_bucket.py (rows in the same report).
"""

from __future__ import annotations

import asyncio
import copy
import math
import re
import time
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from camerafleet.api.manifest import FleetSpec, ManifestError, load_manifest, parse_manifest

pytestmark = pytest.mark.faults

EXACT_INT_MAX = 2**53  # what every JSON parser and the CRD schema (float64 bounds) hold exactly
ROUND_TRIPS, MUTATIONS = 100, 400  # ~15 s together on 2 cores

# -- valid manifests --------------------------------------------------------------------------------------

ids = st.from_regex(r"[a-z0-9]([a-z0-9_-]{0,8}[a-z0-9])?", fullmatch=True)
camera = st.fixed_dictionaries(
    {"id": ids, "source": st.sampled_from(["synthetic:", "synthetic:640x360@15", "rtsp://nvr.local/lobby", "clips/a.mp4"])},
    optional={
        "inferenceFps": st.floats(0.1, 120),
        "producerShards": st.integers(1, 16),
        "enabled": st.booleans(),
        "sourceSecretEnv": st.from_regex(r"[A-Z_][A-Z0-9_]{0,12}", fullmatch=True),
    },
)
batching = st.fixed_dictionaries({"maxBatchSize": st.integers(1, 64)}, optional={"batchWaitTimeoutMs": st.integers(0, 1000)})
model = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("face"), "modelUri": st.just("models/centerface.onnx")},
        optional={"face": st.fixed_dictionaries({"scoreThreshold": st.floats(0.05, 0.95)}), "batching": batching},
    ),
    st.fixed_dictionaries(
        {"type": st.just("yolo"), "modelUri": st.just("s3://models/yolo.onnx")},
        optional={"yolo": st.fixed_dictionaries({"classNames": st.lists(st.text(max_size=8), max_size=3)}), "batching": batching},
    ),
    st.fixed_dictionaries(
        {"type": st.just("camera-health")},
        optional={
            "cameraHealth": st.fixed_dictionaries({"blurredSharpnessMax": st.floats(0, 1e4)}),
            "autoscaling": st.fixed_dictionaries({"minReplicas": st.integers(0, 2), "maxReplicas": st.integers(2, 8)}),
        },
    ),
)
manifests = st.builds(
    lambda cams, models, retention, frame_bytes, age_ms: {
        "apiVersion": "camerafleet.io/v1alpha1",
        "kind": "CameraFleet",
        "metadata": {"name": "fleet"},
        "spec": {
            "cameras": cams,
            "models": [{"name": f"m{i}", **m} for i, m in enumerate(models)],
            "kafka": {"retentionMs": retention, "topicPrefix": "cam_"},
            "bucket": {"maxFrameBytes": frame_bytes},
            "consumer": {"maxFrameAgeMs": age_ms},
        },
    },
    st.lists(camera, min_size=1, max_size=4, unique_by=lambda c: c["id"]),
    st.lists(model, min_size=1, max_size=3),
    st.integers(60_000, 10**9),
    st.integers(1024, 2**30),
    st.integers(1, 10**7),
)

# Whatever YAML can produce: unbounded integers, infinities and NaN, non-string keys.
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["face", "yolo", "camera-health", "synthetic:", "Delete", "", "0", "-1", "1e309"])
)
json_ish = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8) | st.integers(), children, max_size=4),
    max_leaves=12,
)
# Values at the edges of what Kubernetes (int64), Kafka (long) and JSON (finite numbers) can hold.
extremes = st.sampled_from([2**63, 2**64, 10**30, -(2**63) - 1, float("inf"), float("-inf"), float("nan"), 1e308, -1, 0, ""])


def problem_paths(err: ManifestError) -> list[str]:
    return re.findall(r"^  - (.+?): ", str(err), flags=re.M)


def representable(value: Any, path: str = "") -> list[str]:
    """Paths of values the CRD schema, JSON parsers and Kafka configs cannot hold exactly (beyond 2**53, inf, NaN)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return []
    if isinstance(value, int):
        return [] if -EXACT_INT_MAX <= value <= EXACT_INT_MAX else [f"{path}={value}"]
    if isinstance(value, float):
        return [] if math.isfinite(value) else [f"{path}={value}"]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in representable(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in representable(v, f"{path}.{i}")]
    return []


def all_paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    out = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += [(*prefix, k), *all_paths(v, (*prefix, k))]
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += [(*prefix, i), *all_paths(v, (*prefix, i))]
    return out


def related(problem: str, mutated: str) -> bool:
    """The problem names the mutated field, one of its parents (a cross-field check) or a child of it."""
    return problem == mutated or mutated.startswith(problem + ".") or problem.startswith(mutated + ".")


# -- the tests ----------------------------------------------------------------------------------------------


@settings(max_examples=ROUND_TRIPS, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(manifests)
def check_round_trip(doc):
    fleet = parse_manifest(doc)
    dumped = fleet.model_dump(by_alias=True, mode="json", exclude_none=True)
    assert parse_manifest(dumped) == fleet
    assert parse_manifest(yaml.safe_load(yaml.safe_dump(dumped))) == fleet
    assert FleetSpec.model_validate_json(fleet.spec.model_dump_json(by_alias=True)) == fleet.spec  # what Ray actors receive


def test_valid_manifests_round_trip(fault_report):
    row = fault_report.row(
        f"{ROUND_TRIPS} generated valid manifests (cameras, all model types, Kafka/bucket/consumer limits)",
        "each parses, and parses again to the same fleet from its JSON dump, its YAML and the spec JSON Ray actors get",
    )
    started = time.monotonic()
    check_round_trip()
    row.happened = f"{ROUND_TRIPS} manifests round-tripped unchanged in {time.monotonic() - started:.1f} s"


@settings(max_examples=400, deadline=None)
@given(json_ish | st.fixed_dictionaries({}, optional={"apiVersion": json_ish, "kind": json_ish, "metadata": json_ish, "spec": json_ish}))
def check_any_document(doc):
    try:
        fleet = parse_manifest(doc, "fuzz.yaml")
    except ManifestError as err:
        assert problem_paths(err), f"no field named in {err}"
        return
    assert not representable(fleet.model_dump(by_alias=True)), fleet


def test_any_document_parses_or_fails_with_manifest_error(fault_report):
    row = fault_report.row(
        "400 arbitrary JSON/YAML-like documents (any nesting, unbounded ints, inf/NaN, non-string keys)",
        "ManifestError listing field paths, never another exception",
    )
    started = time.monotonic()
    check_any_document()
    row.happened = f"400 documents: only ManifestError with field paths, in {time.monotonic() - started:.1f} s"


@settings(max_examples=MUTATIONS, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(manifests, st.data())
def check_mutation(doc, data):
    doc = copy.deepcopy(doc)
    path = data.draw(st.sampled_from(all_paths(doc)), label="path")
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    how = data.draw(st.sampled_from(["replace", "delete", "add unknown key"]), label="how")
    if how == "replace":
        parent[path[-1]] = data.draw(extremes | json_ish, label="value")
    elif how == "delete":
        del parent[path[-1]]
    else:
        target = parent[path[-1]]
        if not isinstance(target, dict):
            return
        # Printable keys: the test finds field names in the error text line by line, so a key holding a line
        # break or blank would be split by the parser of this test, not by the product's message.
        printable = st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp"))
        key = data.draw(st.text(printable, min_size=1, max_size=8).filter(lambda k: k not in target), label="key")
        target[key] = data.draw(json_ish, label="value")
        path = (*path, key)
    mutated = ".".join(map(str, path))
    try:
        fleet = parse_manifest(doc, "mutated.yaml")
    except ManifestError as err:
        problems = problem_paths(err)
        assert any(related(p, mutated) for p in problems), f"mutated {mutated}, but the error names {problems}:\n{err}"
        return
    unrepresentable = representable(fleet.model_dump(by_alias=True))
    assert not unrepresentable, f"mutated {mutated}: accepted values no consumer can hold: {unrepresentable}"


def test_mutated_manifests_fail_naming_the_field(fault_report):
    row = fault_report.row(
        f"{MUTATIONS} valid manifests with one field replaced by anything, deleted, or an unknown key added",
        "either still valid with only finite values within ±2**53, or ManifestError naming that field (or the parent whose check it broke)",
    )
    started = time.monotonic()
    check_mutation()
    row.happened = (
        f"{MUTATIONS} mutations: every refusal named the field, every acceptance was representable ({time.monotonic() - started:.1f} s)"
    )


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300) | st.builds(lambda doc: yaml.safe_dump(doc, sort_keys=False), json_ish))
def check_yaml_text(tmp_path_factory, text):
    path = tmp_path_factory.getbasetemp() / "fuzz-manifest.yaml"
    path.write_text(text)
    try:
        load_manifest(path)
    except ManifestError as err:
        assert str(err).startswith(str(path)), err


def test_any_yaml_text_loads_or_fails_with_manifest_error(fault_report, tmp_path_factory):
    row = fault_report.row(
        "300 arbitrary texts and YAML documents as the manifest file", "ManifestError naming the file, never another exception"
    )
    started = time.monotonic()
    check_yaml_text(tmp_path_factory)
    row.happened = f"300 files: only ManifestError, in {time.monotonic() - started:.1f} s"


def test_yaml_alias_bomb_is_refused_quickly(fault_report, tmp_path):
    row = fault_report.row(
        "YAML alias bomb ('billion laughs': 2x10^9 cameras by reference) as the manifest",
        "refused within seconds with a ManifestError, memory untouched",
    )
    levels = "\n".join(f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 10))
    path = tmp_path / "bomb.yaml"
    path.write_text(
        "apiVersion: camerafleet.io/v1alpha1\nkind: CameraFleet\nmetadata:\n  name: bomb\n"
        "  l0: &l0 [{id: '1', source: 'synthetic:'}, {id: '2', source: 'synthetic:'}]\n"
        f"{levels}\nspec:\n  cameras: *l9\n  models: [{{name: h, type: camera-health}}]\n"
    )
    started = time.monotonic()
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    took = time.monotonic() - started
    row.happened = (
        f"ManifestError after {took:.2f} s: {str(info.value).splitlines()[1].strip()} (+{len(problem_paths(info.value)) - 1} more)"
    )
    # Refused without walking the expansion: any walk over 2x10^9 references takes hours on any machine, the
    # refusal milliseconds; the bound is there so that a regression fails instead of hanging the suite.
    assert took < 60
    assert "spec.cameras.0" in str(info.value)


def test_unknown_model_type_is_named(fault_report):
    row = fault_report.row(
        "model of an unknown type ('resnet') in a manifest",
        "ManifestError naming spec.models.0.type, the value given and the types there are",
    )
    doc = {
        "apiVersion": "camerafleet.io/v1alpha1",
        "kind": "CameraFleet",
        "metadata": {"name": "t"},
        "spec": {"cameras": [{"id": "1", "source": "synthetic:"}], "models": [{"name": "r", "type": "resnet", "modelUri": "r.onnx"}]},
    }
    with pytest.raises(ManifestError) as info:
        parse_manifest(doc, "fleet.yaml")
    text = str(info.value)
    row.happened = text.replace("\n", " ")
    assert "spec.models.0.type" in text and "'resnet'" in text
    assert all(t in text for t in ("'face'", "'yolo'", "'camera-health'"))


def test_oversized_batch_fails_every_frame(fault_report, tmp_path):
    from camerafleet.serving.ingress import MAX_FRAMES_PER_REQUEST, FleetIngress

    row = fault_report.row(
        f"one inference request with {MAX_FRAMES_PER_REQUEST + 1} frames (limit {MAX_FRAMES_PER_REQUEST})",
        "every frame failed with reason batch_too_large, nothing fetched or decoded",
    )
    spec = FleetSpec.model_validate(
        {
            "cameras": [{"id": "1", "source": "synthetic:"}],
            "models": [{"name": "h", "type": "camera-health"}],
            "bucket": {"uri": f"file://{tmp_path}/frames"},
        }
    )
    ingress = FleetIngress.func_or_class(spec.serving_app("hostile").model_dump_json(by_alias=True), {})
    now_ms = int(time.time() * 1000)
    frame = {
        "cameraId": "1",
        "seq": 0,
        "epochMs": now_ms,
        "captureTsMs": now_ms,
        "uri": f"file://{tmp_path}/frames/1/x.jpg",
        "width": 8,
        "height": 8,
    }
    results = asyncio.run(ingress.infer([frame] * (MAX_FRAMES_PER_REQUEST + 1)))
    reasons = {r.reason for r in results}
    row.happened = f"{len(results)} results, reasons {reasons}"
    assert len(results) == MAX_FRAMES_PER_REQUEST + 1 and reasons == {"batch_too_large"}
    at_limit = asyncio.run(ingress.infer([frame] * MAX_FRAMES_PER_REQUEST))
    assert {r.reason for r in at_limit} == {"frame_missing"}, "a batch at the limit is processed (here: its frame is missing)"
