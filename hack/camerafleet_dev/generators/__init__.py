"""Generated files of the repository and their sources of truth: the CRD (from the pydantic manifest
models), the chart's copy of the operator's RBAC rules, the top-level rayservice.yaml / rayjob.yaml
(from the example cluster fleet) and the README's table of outcome reasons (from the Reason enum).
`python -m camerafleet_dev.generators --write|--check` (`make generate`; `make lint` and a unit test check)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
