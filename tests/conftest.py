"""Test-suite configuration shared by all tests.

Fixtures live in ``tests/fixtures/`` modules, one per concern, registered here as plugins. The
development machinery in ``hack/`` (dev servers, benchmark) is on the path of the test process through
pytest's ``pythonpath``; subprocesses and Ray workers started by the tests get it through PYTHONPATH.
"""

import os
from pathlib import Path

HACK = str(Path(__file__).resolve().parents[1] / "hack")
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (HACK, os.environ.get("PYTHONPATH")) if p)

pytest_plugins = [
    "tests.fixtures.servers",
    "tests.fixtures.pipeline",
    "tests.fixtures.controlplane",
    "tests.fixtures.faults",
    "tests.fixtures.cameras",
    "tests.fixtures.browser",
    "tests.fixtures.prometheus",
]
