"""Generates the CameraFleet CRD from the pydantic models, the one source of truth for the schema.

Kubernetes wants a structural OpenAPI v3.0 schema: no `$ref` (pydantic's definitions are inlined),
`nullable` instead of `anyOf [.., null]`, boolean `exclusiveMinimum`, and `additionalProperties: false`
dropped (it may not sit beside `properties`; unknown fields are refused by the API server's strict field
validation, which kubectl uses by default). `make generate` writes the committed copies (the operator's
`config/crd/` and the operator chart's `crds/`); `make lint` and a unit test fail when either is stale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from camerafleet.api.manifest import GROUP, KIND, PER_FLEET_ON_KUBERNETES, PLURAL, SHORT_NAMES, SINGULAR, VERSION, FleetSpec
from camerafleet_dev.generators import ROOT
from camerafleet_operator.status import CrdStatus

CRD_PATH = ROOT / "operator" / "config" / "crd" / f"{GROUP}_{PLURAL}.yaml"
CHART_CRD_PATH = ROOT / "charts" / "camerafleet-operator" / "crds" / CRD_PATH.name

_DROP = {"title", "additionalProperties"}
[PER_FLEET] = PER_FLEET_ON_KUBERNETES


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_structural(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if node.get(PER_FLEET):  # defaulted by the operator, per fleet: no default the API server would store
        node = {k: v for k, v in node.items() if k not in (PER_FLEET, "default")}
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        extra = {k: v for k, v in node.items() if k != "$ref"}
        return _structural({**target, **extra}, defs)
    variants = node.get("anyOf")
    if variants is not None:
        others = [v for v in variants if v != {"type": "null"}]
        if len(others) != 1:
            raise ValueError(f"cannot express a union of {len(others)} types in a structural schema: {variants}")
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        merged = _structural({**others[0], **rest}, defs)
        if len(others) < len(variants):
            merged["nullable"] = True
            if merged.get("default", 0) is None:
                del merged["default"]
        return merged
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP and not (key == "additionalProperties" and isinstance(value, dict)):
            continue
        if key == "properties":
            out[key] = {name: _structural(v, defs) for name, v in value.items()}
        elif key == "exclusiveMinimum" and not isinstance(value, bool):
            out["minimum"], out["exclusiveMinimum"] = value, True
        elif key == "exclusiveMaximum" and not isinstance(value, bool):
            out["maximum"], out["exclusiveMaximum"] = value, True
        elif key == "const":
            out["enum"] = [value]
        else:
            out[key] = _structural(value, defs)
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return out


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return _structural(raw, defs)


def camerafleet_crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"kind": KIND, "listKind": f"{KIND}List", "plural": PLURAL, "singular": SINGULAR, "shortNames": SHORT_NAMES},
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Cameras", "type": "integer", "jsonPath": ".status.cameras"},
                        {"name": "Producers", "type": "integer", "jsonPath": ".status.pools.producer.actors"},
                        {"name": "Consumers", "type": "integer", "jsonPath": ".status.pools.consumer.actors"},
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A fleet of cameras whose frames flow through Kafka to models served by Ray Serve.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string", "description": "camerafleet.io/v1alpha1"},
                                "kind": {"type": "string", "description": "CameraFleet"},
                                "metadata": {"type": "object"},
                                "spec": openapi_schema(FleetSpec),
                                "status": openapi_schema(CrdStatus),
                            },
                        }
                    },
                }
            ],
        },
    }


def render() -> str:
    header = "# Generated by `make generate` from the pydantic models (camerafleet.api.manifest). Do not edit.\n"
    return header + yaml.safe_dump(camerafleet_crd(), sort_keys=False, width=120)


def files() -> dict[Path, str]:
    """The CRD, for the operator's kustomize-style config and the operator chart's `crds/` (Helm installs it first)."""
    text = render()
    return {CRD_PATH: text, CHART_CRD_PATH: text}
