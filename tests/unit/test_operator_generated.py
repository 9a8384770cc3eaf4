"""Generated files match their source of truth: the CRD (pydantic models), rayservice.yaml and
rayjob.yaml (the example cluster fleet), and the Ray version everywhere it is written."""

import re
import tomllib
from importlib.metadata import version

import yaml

from camerafleet.api.versions import RAY_VERSION
from camerafleet_dev import generators
from camerafleet_dev.generators import __main__ as generate
from camerafleet_dev.generators import crd

ROOT = generators.ROOT


def walk(node, path="$"):
    if isinstance(node, dict):
        yield path, node
        for k, v in node.items():
            yield from walk(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{path}[{i}]")


def test_every_generated_file_is_up_to_date():
    """The CRD (from the models), the chart's copies and rayservice.yaml / rayjob.yaml (from the example fleet)."""
    assert generate.stale() == [], "run `make generate`"


def test_crd_is_structural_and_documented():
    schema = crd.camerafleet_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec = schema["properties"]["spec"]
    for path, node in walk(spec):
        assert "$ref" not in node and "anyOf" not in node and "allOf" not in node, path
        assert not ("additionalProperties" in node and "properties" in node), path
        if path != "$" and not path.endswith((".properties", ".items")) and "type" in node and not path.endswith("additionalProperties"):
            assert node.get("description"), f"{path} has no description"
    camera = spec["properties"]["cameras"]["items"]
    assert camera["required"] == ["id", "source"]
    assert camera["properties"]["inferenceFps"]["exclusiveMinimum"] is True
    assert spec["properties"]["models"]["items"]["properties"]["type"]["enum"] == ["face", "yolo", "camera-health"]
    assert spec["properties"]["kafka"]["properties"]["topicDeletionPolicy"]["enum"] == ["Retain", "Delete"]


def test_standalone_manifests_are_in_sync():
    docs = list(yaml.safe_load_all((ROOT / "rayjob.yaml").read_text()))
    assert [d["kind"] for d in docs] == ["ConfigMap", "ServiceAccount", "Role", "RoleBinding", "RayJob", "Service"]
    job, console = docs[-2:]
    assert (
        job["spec"]["entrypoint"]
        == "camerafleet run /etc/camerafleet/fleet.yaml --metrics-port 8081 --console-port 8090 --console-host 0.0.0.0"
    )
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]
    assert console["spec"]["selector"].items() <= {**head["metadata"]["labels"], "ray.io/node-type": "head"}.items()


def test_ray_version_agrees_everywhere():
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["pipeline"]
    pinned = next(re.match(r"ray\[serve\]==(.+)", p).group(1) for p in pins if p.startswith("ray["))
    assert RAY_VERSION == pinned == version("ray")
    service = yaml.safe_load((ROOT / "rayservice.yaml").read_text())
    assert service["spec"]["rayClusterConfig"]["rayVersion"] == RAY_VERSION


def test_every_list_map_and_number_of_the_crd_is_bounded():
    """Issue 24: the API server accepted a fleet of any number of cameras, models or partitions (each a Kafka topic,
    a Serve deployment, work for the operator): every array, map and number has a bound now."""
    schema = crd.camerafleet_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    bound_of = {"array": "maxItems", "integer": "maximum", "number": "maximum"}
    unbounded = [
        path
        for path, node in walk(schema)
        if (isinstance(node.get("type"), str) and node["type"] in bound_of and bound_of[node["type"]] not in node)
        or ("additionalProperties" in node and "maxProperties" not in node)
    ]
    assert not unbounded, unbounded
    assert schema["properties"]["cameras"]["maxItems"] == 4096 and schema["properties"]["models"]["maxItems"] == 16
