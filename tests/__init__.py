"""CameraFleet's test suite (a package so that shared fixtures import as ``tests.fixtures``)."""
