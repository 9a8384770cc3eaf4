"""Test-suite configuration shared by all tests.

Fixtures live in ``tests/fixtures/`` modules, one per concern, registered here as plugins.
"""

pytest_plugins = [
    "tests.fixtures.servers",
    "tests.fixtures.pipeline",
    "tests.fixtures.controlplane",
    "tests.fixtures.faults",
]
