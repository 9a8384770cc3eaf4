"""Generated files of the repository and their sources of truth: the CRD (from the pydantic manifest
models), the chart's copy of the operator's RBAC rules, and the top-level rayservice.yaml / rayjob.yaml
(from the example cluster fleet). `python -m camerafleet_dev.generators --write|--check` (`make
generate`, and `make lint` checks)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
