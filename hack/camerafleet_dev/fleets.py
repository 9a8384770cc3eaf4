"""Manifests that tests and development tools run on one machine, each fleet isolated by its name: its own topics,
consumer group, Serve app, bucket folder and results directory, so that runs on one Kafka never share anything."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def isolated_fleet(
    name: str, kafka: str, work: Path, *, cameras: list[dict], models: list[dict], bucket: dict | None = None, **spec: Any
) -> dict:
    """A CameraFleet whose frames and results live under `work`; `spec` adds or replaces top-level sections."""
    return {
        "apiVersion": "camerafleet.io/v1alpha1",
        "kind": "CameraFleet",
        "metadata": {"name": name},
        "spec": {
            "cameras": cameras,
            "models": models,
            "kafka": {
                "bootstrapServers": kafka,
                "topicPrefix": f"{name}_camera_",
                "resultsTopic": f"{name}_results",
                "deadLetterTopic": f"{name}_deadletter",
                "eventsTopic": f"{name}_events",
                "consumerGroup": name,
            },
            "bucket": bucket or {"uri": f"file://{work}/frames"},
            "serving": {"appName": name, "routePrefix": f"/{name}"},
            "results": {"logDir": str(work / "runs")},
            **spec,
        },
    }


def centerface(models_dir: Path, **overrides: Any) -> dict[str, Any]:
    """The real CenterFace detector at 640x384, batched by 4, on half a core."""
    return {
        "name": "faces",
        "type": "face",
        "modelUri": str(models_dir / "centerface.onnx"),
        "face": {"inputWidth": 640, "inputHeight": 384, "scoreThreshold": 0.5},
        "batching": {"maxBatchSize": 4, "batchWaitTimeoutMs": 20},
        "resources": {"cpus": 0.5},
        **overrides,
    }
