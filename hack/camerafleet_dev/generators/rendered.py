"""The top-level `rayservice.yaml` and `rayjob.yaml`: the example cluster fleet rendered by the operator's
own functions, so they can be applied with plain kubectl where KubeRay runs, without the operator."""

from __future__ import annotations

from pathlib import Path

from camerafleet.api.manifest import CONFIG_MAP_KEY, CameraFleet, load_manifest
from camerafleet_dev.generators import ROOT
from camerafleet_operator.render import (
    RAY_TOKEN_KEY,
    config_map,
    console_service,
    fleet_document,
    names,
    ray_job,
    ray_service,
    runner_access,
    to_yaml,
    to_yaml_all,
)

EXAMPLE_FLEET = ROOT / "examples" / "cluster-fleet.yaml"


def standalone_files(fleet: CameraFleet, namespace: str = "default") -> dict[str, str]:
    """The top-level rayservice.yaml and rayjob.yaml, applicable without the operator."""
    name, spec = fleet.metadata.name, fleet.spec
    header = (
        "# Generated from examples/cluster-fleet.yaml by `make generate`. Do not edit.\n"
        f"# Ray runs with token authentication: create its Secret first (the operator does this for a fleet):\n"
        f"#   kubectl create secret generic {names(name)['ray_token']} --from-literal={RAY_TOKEN_KEY}=$(openssl rand -base64 32)\n"
    )
    pipeline_config = config_map(name, namespace, spec)
    pipeline_config["data"][CONFIG_MAP_KEY] = to_yaml(fleet_document(name, spec, serving_url=None))
    return {
        "rayservice.yaml": header + to_yaml(ray_service(name, namespace, spec)),
        "rayjob.yaml": header
        + "# The whole pipeline (Serve app, consumers, producers) as one RayJob, with its manifest in a ConfigMap\n"
        + "# that the job's service account may read (manifest edits apply within seconds), and the Service of\n"
        + "# its fleet console (`kubectl port-forward service/<fleet>-console 8090`).\n"
        + to_yaml_all(
            [
                pipeline_config,
                *runner_access(name, namespace, spec),
                ray_job(name, namespace, spec, "all"),
                console_service(name, namespace),
            ]
        ),
    }


def files() -> dict[Path, str]:
    return {ROOT / name: text for name, text in standalone_files(load_manifest(EXAMPLE_FLEET)).items()}
